"""IK-grounded driving agent: the leaderboard entry point lives in ``agent/ik_agent.py``.

Keep this package light to import: the CARLA evaluator imports ``ik_agent`` at start-up, and the
model (torch, transformers) is loaded only in ``IKAgent.setup``.
"""
