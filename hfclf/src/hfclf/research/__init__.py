"""research: search the Hugging Face Hub for datasets and pin one in the project config."""
