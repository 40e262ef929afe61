"""carla-eval: closed-loop evaluation of leaderboard agents on the embedded sandbox or on CARLA."""
