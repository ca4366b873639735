"""analyze: where the model fails - confidence, slices, robustness, out-of-scope inputs - and what to change."""
