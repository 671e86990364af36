"""Every Python snippet of docs/api.md runs, in order, as a user would run it from a project folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_snippet_of_the_python_api_page_runs(tmp_path):
    code = "\n".join(re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S))
    assert "train_recipe" in code and "load_pipeline" in code and "CondiffError" in code
    for folder in ("recipes", "docs"):  # the snippets use the project's recipes and example images
        (tmp_path / folder).symlink_to(ROOT / folder)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "10 steps, final loss" in out
    assert "['grayscale'] 2 (32, 32)" in out
    assert "'levels': 3" in out and "give an image of at least 8x8" in out
    assert (tmp_path / "outputs" / "api-demo" / "first.png").is_file()
