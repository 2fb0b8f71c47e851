"""`--help` says what a script and a new operator need without the README (issue 23): every
exit code, and every credential variable, from the code's own names so that they cannot drift."""

from __future__ import annotations

import pytest

from batchsms.cli import main
from batchsms.errors import ExitCode
from batchsms.transport import credentials

VARIABLES = [credentials.CLIENT_TOKEN_ENV, *(name for pair in credentials.AKSK_ENVS
                                              for name in pair),
             credentials.PROJECT_ID_ENV, credentials.DOMAIN_ID_ENV,
             credentials.SECURITY_TOKEN_ENV, credentials.CREDENTIALS_FILE_ENV,
             "BATCHSMS_ENDPOINT"]


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # wrapping aside


@pytest.mark.parametrize("command", [(), ("run",), ("plan",), ("tasks",)])
def test_help_names_the_exit_codes_and_the_credential_variables(
        capsys: pytest.CaptureFixture[str], command: tuple[str, ...]) -> None:
    text = help_of(capsys, *command)
    assert "exit codes" in text
    for code in ExitCode:
        if code not in (ExitCode.SIGINT, ExitCode.SIGTERM):
            assert f" {int(code)} " in text, code
    assert f"{int(ExitCode.SIGINT)}/{int(ExitCode.SIGTERM)}" in text
    for name in VARIABLES:
        assert name in text, name
