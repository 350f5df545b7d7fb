"""``cairn demo``: the scripted tour of the shop runs to its end and shows what it promises."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cairn._cli import main
from cairn.collector._render import Style
from cairn.platform._tour import TourFailed, _until, run_tour

pytestmark = pytest.mark.slow

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def test_the_tour_shows_the_seed_and_survives_its_own_chaos(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    shutil.copytree(SHOP, folder, ignore=shutil.ignore_patterns(".cairn", "__pycache__"))
    lines: list[str] = []
    style = Style(width=120, color=False, ascii=False)
    code = asyncio.run(run_tour(folder / "cairn.toml", say=lines.append, style=style))
    out = "\n".join(lines)
    assert code == 0, out
    # The seed's tree, from the collector.
    assert "GET /orders/{order_id} (" in out
    assert "├─ db.query (" in out
    assert "└─ inventory.check (" in out
    assert "└─ GET /inventory/items (" in out
    # The log query, an instance killed with no failed order, the breaker's cycle.
    assert "purchase_completed" in out
    assert "carries its request's trace id" in out
    assert "inventory-2 killed (SIGKILL)" in out
    assert out.count("failed orders: 0") == 2
    assert "breaker inventory/inventory-1: closed → open" in out
    assert "open → half_open → closed" in out
    assert "every process stopped" in out
    assert not (folder / ".cairn" / "run.json").exists()


def test_until_names_what_never_happened() -> None:
    async def never() -> None:
        return None

    with pytest.raises(TourFailed, match=r"the thing: not seen within 0.2 s"):
        asyncio.run(_until("the thing", never, deadline=0.2))


def test_demo_without_the_shop_says_where_to_run_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "no manifest at" in result.output
    assert "runs the example shop" in result.output
