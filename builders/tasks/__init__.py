"""build-tasks: TCMChat-style task formats, one module per task (mcq, ner, rc, cls); the builder is
`build.TasksBuilder`."""

BUILDER = "tasks"  # the command name without "build-"
BUILDER_VERSION = "1"
