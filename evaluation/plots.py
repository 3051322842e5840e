"""Loss and metric curves as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from .results import Curves

ROLE_COLOURS = {"candidate": "tab:red", "baseline": "tab:blue", "single": "tab:green"}


def plot_curves(runs: list[tuple[str, int, Curves]], problem: str, directory: Path) -> list[Path]:
    """One PNG of training loss and one per evaluation metric, every (role, seed) a line."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    panels = {"train_loss": [(r, s, c.train_loss) for r, s, c in runs]}
    names = sorted({name for _, _, c in runs for name in c.eval})
    for name in names:
        panels[f"eval_{name}"] = [(r, s, c.eval.get(name, ())) for r, s, c in runs]
    for panel, lines in panels.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        labelled = set()
        for role, _seed, points in lines:
            if not points:
                continue
            label = role if role not in labelled else None
            labelled.add(role)
            ax.plot([p.step for p in points], [p.value for p in points],
                    color=ROLE_COLOURS.get(role, "tab:gray"), alpha=0.8, label=label,
                    marker="o" if panel.startswith("eval_") else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.removeprefix("eval_"))
        ax.set_title(f"{problem}: {panel.replace('_', ' ')}")
        if labelled:
            ax.legend()
        ax.grid(alpha=0.3)
        path = directory / f"{problem}_{panel}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
