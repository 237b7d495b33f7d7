"""Tools around runs: plan (will it fit), sweep (+ its report), the data report, the demo."""
