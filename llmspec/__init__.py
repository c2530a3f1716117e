"""llmspec: compile a typed YAML spec of an LLM training run into a plan and a project."""

__version__ = "0.1.0"
