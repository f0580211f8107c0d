"""The streamrec web dashboard."""
