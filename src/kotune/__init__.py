"""kotune."""
