"""The Palmer Penguins example: CsvExampleGen -> trainer -> validate -> push to TF Serving."""

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
PENGUIN_CSV = DATA_DIR / "penguins.csv"
