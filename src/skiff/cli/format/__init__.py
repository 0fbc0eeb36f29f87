"""docker-style output: human sizes and durations, aligned tables, --format handling."""
