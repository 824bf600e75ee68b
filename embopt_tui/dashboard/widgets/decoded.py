"""What z and the predictions decode to, each prediction beside its target."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widget import Widget

from embopt_tui.dashboard.state import ExperimentView
from embopt_tui.dashboard.widgets.front import front_table
from embopt_tui.format import ellipsize, num

HISTORY_SHOWN = 4
FRONT_SHOWN = 6
Z_LINES = 2  # garbage decodes run to max_len tokens: keep z to two lines, the rest to one


class DecodedView(Widget):
    """Latest decode of z, every prediction against its target (exact matches marked), z's history."""

    BORDER_TITLE = "Decoded"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.view: ExperimentView | None = None
        self._shown: tuple[object, ...] | None = None

    def show(self, view: ExperimentView | None) -> None:
        self.view = view
        key = () if view is None else (view.name, view.decoded, len(view.z_history), view.result is None, view.text)
        if key != self._shown:  # decodes come every few steps: most frames change nothing here
            self._shown = key
            self.refresh()

    def render(self) -> RenderableType:
        return render_decoded(self.view, max(20, self.size.width))


def render_decoded(x: ExperimentView | None, width: int) -> RenderableType:
    d = x.decoded if x is not None else None
    result = x.result if x is not None else None
    if x is None or (d is None and not result):
        return Text("No decode yet: z and its predictions are decoded every few steps.", style="dim")
    if d is not None:
        z_text, step = d.z_text, d.step
        predictions, targets, exact = d.predictions, d.targets, d.exact
    else:
        assert result is not None
        z_text, step = str(result.get("decoded_z") or ""), x.step
        predictions = tuple(result.get("decoded_predictions") or ())
        exact = tuple(result.get("exact_match") or ())
        targets = x.targets or tuple(result.get("targets") or ())
    fluency = f" · nll {num(x.text_nll, 2)}" if x.text_nll is not None else ""
    # z decoding to the best sentence itself (the discrete methods): its fluency goes on z's line
    head = f"z @ {step}{fluency if x.text and x.text == z_text else ''}: "
    lines = [Text.assemble((head, "bold"), (ellipsize(z_text, Z_LINES * width - len(head) - 1), "magenta"))]
    if x.text and x.text != z_text:  # the best real sentence so far, whole (wrapped): it is the finding
        lines.append(Text.assemble((f"text {num(x.text_sim)}{fluency}: ", "bold"), (x.text, "bold magenta")))
    for i, prediction in enumerate(predictions):
        hit = i < len(exact) and bool(exact[i])
        target = targets[i] if i < len(targets) else ""
        lines.append(
            Text.assemble(
                ("✓ " if hit else "· ", "bold green" if hit else "dim"),
                ("pred   ", "dim"),
                (ellipsize(prediction, width - 9), "bold green" if hit else ""),
            )
        )
        lines.append(Text.assemble(("  target ", "dim"), (ellipsize(target, width - 9), "green" if hit else "dim")))
    front = front_table(result, FRONT_SHOWN) if result else None
    if front is not None:  # a fluent_swap row's trade-off, its whole texts wrapped; Enter on Results: all of it
        return Group(Text("\n").join(lines), front)
    history = [h for h in reversed(x.z_history) if h[0] != step][:HISTORY_SHOWN]
    if history:
        lines.append(Text("z before:", style="bold"))
        for past_step, text in history:
            label = f"  @{past_step:<4d} "
            lines.append(Text.assemble((label, "dim"), ellipsize(text, width - len(label))))
    return Text("\n").join(lines)
