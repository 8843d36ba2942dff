"""examples/demo.toml is the demo's protocol, so `seqtransfer run examples/demo.toml` runs the demo."""

from pathlib import Path

from seqtransfer.demo import demo_config
from seqtransfer.experiment.config import load_config


def test_the_example_file_is_the_demo_config() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"
    assert load_config(path) == demo_config(0)
