"""Inspect a study: the leaderboard (`status`), figures (`report`) and optuna-dashboard."""
