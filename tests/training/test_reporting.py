import logging
from pathlib import Path

from chatbot.config import TrainingConfig
from chatbot.prepare import PreparedData
from chatbot.training.reporting import Reporter, TrainReport, model_card


def test_an_epoch_is_logged_in_one_line_and_written_by_the_chief_only(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="chatbot.training")
    record = {"epoch": 2, "step": 12, "loss": 1.23456, "train_tokens_per_s": 12345.0}
    Reporter(TrainingConfig(), tmp_path / "logs", is_chief=True).epoch_done(record)
    assert caplog.messages == ["epoch 2: loss 1.235, train_tokens_per_s 12,345"]
    assert (tmp_path / "logs" / "train").is_dir()
    Reporter(TrainingConfig(), tmp_path / "other", is_chief=False).epoch_done(record)
    assert not (tmp_path / "other").exists()


def test_the_card_names_both_splits_inputs(prepared: Path, tmp_path: Path):
    data = PreparedData.load(prepared)
    report = TrainReport(bundle=tmp_path, work_dir=tmp_path, epochs_done=1, stopped="finished")
    card = model_card(
        report, data, command="chatbot train", strategy="default", replicas=1, precision="float32"
    )
    assert card["data"]["inputs"] == data.manifest["inputs"]
    assert card["data"]["valid_inputs"] == data.manifest["valid_inputs"]
    assert card["training"]["stopped"] == "finished" and card["command"] == "chatbot train"
