"""tinyseq's built-in cells, registered through the same pluggy hook as third-party ones."""
