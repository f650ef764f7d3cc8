import subprocess
import sys

import serve.app
from chatbot.cli import main


def test_importing_the_library_does_not_import_the_server():
    code = (
        "import sys, chatbot.cli, chatbot.bot; "
        "print(any(name.split('.')[0] == 'serve' for name in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_serve_runs_the_app_with_the_flags_over_the_environment(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        serve.app, "serve", lambda settings, workers: calls.append((settings, workers))
    )
    assert main(["serve", "--model", "some/bundle", "--port", "8123", "--workers", "2"]) == 0
    ((settings, workers),) = calls
    assert (settings.model, settings.port, workers) == ("some/bundle", 8123, 2)
    assert "Serving some/bundle at http://" in capsys.readouterr().out
