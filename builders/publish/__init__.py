"""Publishing dataset dirs: Hub push, exports to other trainers, statistics, plots, HTML reports."""
