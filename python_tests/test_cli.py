import subprocess
import sys

from torchlite import __version__
from torchlite.cli import build_parser


def test_help_lists_commands():
    text = build_parser().format_help()
    assert "bench" in text and "synth" in text


def test_version_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "torchlite", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"torchlite {__version__}"


def test_bench_help_documents_options():
    out = subprocess.run([sys.executable, "-m", "torchlite", "bench", "--help"], capture_output=True, text=True, check=True)
    for opt in ("--quick", "--json", "--device", "--only"):
        assert opt in out.stdout
