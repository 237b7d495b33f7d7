"""kotune studio: the web UI (`kotune studio`, optional extra `kotune[ui]`): a view over the same config, data report, run files and chat as the CLI."""
