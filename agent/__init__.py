"""IK-grounded driving agent: the leaderboard entry point lives in ``agent/ik_agent.py``.

Keep this package light to import: the CARLA evaluator imports ``ik_agent`` at start-up, on Python
3.7 or later. The model (torch, transformers) is loaded in ``IKAgent.setup`` in in-process mode, or
runs in the model server (``python -m agent.serve``) in server mode.
"""
