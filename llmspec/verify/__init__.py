"""Verification: the planner's predictions held to measurements of the generated code.

Sits above codegen (it runs the `model.py` that codegen renders) and below the
CLI; the planner never imports it, so planning stays torch-free.
"""
