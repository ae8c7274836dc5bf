"""The only place that speaks SQL: tables, the writer, queue operations, migrations."""
