"""model.max_length=auto (train/lengths.py): the data's length from the token profile, the lengths
the smoke test times, the plan's choice under the budget, and what train runs with."""
import pytest

from hfclf.infra.errors import UserError
from hfclf.train import lengths

# token profiles as prepare writes them (reports/data_profile.json: text_tokens)
MAN_PAGES = {"p50": 188.0, "p99": 678.9, "max": 897, "model_max_positions": 512}   # measured: man pages
ONE_LINERS = {"p50": 12.0, "p99": 22.0, "max": 43, "model_max_positions": 512}     # Debian's descriptions


def test_auto_keeps_99_percent_of_texts_whole_within_the_models_positions_and_never_below_128():
    assert lengths.data_length("auto", ONE_LINERS) == 128              # short texts: the floor, as before
    assert lengths.data_length("auto", dict(ONE_LINERS, p99=130.0)) == 256
    assert lengths.data_length("auto", dict(ONE_LINERS, p99=300.0)) == 384
    assert lengths.data_length("auto", MAN_PAGES) == 512               # p99 679 wants 1024: the model takes 512
    assert lengths.data_length("AUTO", dict(MAN_PAGES, model_max_positions=514)) == 512   # RoBERTa: never 514
    assert lengths.data_length("auto", dict(MAN_PAGES, model_max_positions=None)) == 512  # unknown: 512
    assert lengths.data_length("auto", dict(MAN_PAGES, model_max_positions=4096)) == 1024
    assert lengths.data_length("auto", dict(ONE_LINERS, model_max_positions=64)) == 64    # a small model's limit
    assert lengths.data_length("auto", None) == 128                    # no token profile: the floor
    assert lengths.data_length(200, MAN_PAGES) == 200                  # a number is kept as it is


@pytest.mark.parametrize("bad", ["long", 0, 4.5, True])
def test_a_max_length_that_is_neither_a_number_nor_auto_is_a_clear_error(bad):
    with pytest.raises(UserError, match=r"model.max_length must be (a whole number or auto|at least 8 tokens)"):
        lengths.data_length(bad, ONE_LINERS)
    assert lengths.data_length(None, ONE_LINERS) == 128   # null is auto, as for every auto setting


def test_the_smoke_test_times_every_candidate_from_the_data_length_down_to_128():
    assert lengths.timed_lengths("auto", MAN_PAGES) == [512, 384, 256, 128]
    assert lengths.timed_lengths("auto", dict(ONE_LINERS, p99=130.0)) == [256, 128]
    assert lengths.timed_lengths("auto", ONE_LINERS) == [128]          # short texts: one clock, as before
    assert lengths.timed_lengths(256, MAN_PAGES) == [256]              # a number: only that one


def test_the_plan_keeps_the_longest_length_at_which_enough_epochs_fit():
    # epochs that fit in 30 minutes on man pages, from the smoke test's timing at each length (measured)
    fitting = {512: 3.1, 384: 4.5, 256: 8.0, 128: 13.9}
    assert lengths.budget_length(fitting, 5) == (256, "the longest at which 5 epochs fit in the budget "
                                                      "(plan.length_min_epochs; at 512: 3.1)")
    assert lengths.budget_length(fitting, 3)[0] == 512
    assert lengths.budget_length(fitting, 3)[1] == "the data's length"
    assert lengths.budget_length(fitting, 4.5)[0] == 384
    shortest = lengths.budget_length(fitting, 20)
    assert shortest[0] == 128 and shortest[1].startswith("the shortest timed: even there fewer than 20 epochs")


def test_train_runs_with_the_plans_length_or_without_a_plan_the_datas():
    assert lengths.for_training(96, None, MAN_PAGES) == 96
    assert lengths.for_training("auto", {"model": {"max_length": 256}}, MAN_PAGES) == 256
    assert lengths.for_training("auto", None, MAN_PAGES) == 512      # `hfclf train` by hand after prepare
