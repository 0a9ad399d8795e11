"""Reports: results store → tables (Markdown/LaTeX), plots, image grids, HTML."""
