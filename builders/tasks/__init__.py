"""build-tasks: TCMChat-style task formats (mcq, ner, rc, cls), one module per task."""
