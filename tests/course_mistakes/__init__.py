"""Plausible wrong answers to the course's exercises, one module per notebook: ``MISTAKES`` is a list of
(exercise id, function name, the wrong function's source, a fragment the check's message must contain)."""
