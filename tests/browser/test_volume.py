"""web/js/draw/volume.js and web/js/analyses/volume-view.js in Chromium, on synthetic volumes with a known peak.

The modules are imported from the running server's /js/ like the decoder tests do; each
test draws on a canvas it adds to the page. The projection is recomputed here from
volume.js's documented camera, so a change of convention fails a test. Pixel checks use
the grey palette with the outline, labels and peak ring off, so the brightest pixels are
the volume's brightest voxel.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest

from tests.browser.conftest import Server, Watched, shoot
from tests.browser.pages import canvas_digest

SIZE = 16
W, H = 320, 300
SCALE = 0.55  # volume.js SCALE
DEFAULT = (0.6, 0.3)  # volume.js DEFAULT_ROTATION
BARE = {"outline": False, "labels": False, "marker": False, "palette": "grey"}

# Render on #vol and read its pixels: an FNV-1a hash, and the centroid of the brightest pixels.
RENDER = """async ([values, size, rotation, options, width, height]) => {
  const m = await import('/js/draw/volume.js');
  const { palette } = await import('/js/draw/palette.js');
  let canvas = document.getElementById('vol');
  if (!canvas) {
    canvas = document.createElement('canvas');
    canvas.id = 'vol';
    document.body.appendChild(canvas);
  }
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const volume = values ? { values: Float32Array.from(values), size } : null;
  const opts = { ...options, table: options.palette ? palette(options.palette).table : undefined };
  const result = m.renderVolume(ctx, volume, rotation, opts);
  const px = ctx.getImageData(0, 0, width, height).data;
  let hash = 2166136261, top = -1, sx = 0, sy = 0, n = 0;
  for (let k = 0; k < px.length; k++) hash = Math.imul(hash ^ px[k], 16777619) >>> 0;
  for (let p = 0; p < width * height; p++) {
    const lum = px[4 * p] + px[4 * p + 1] + px[4 * p + 2];
    if (lum > top) { top = lum; sx = 0; sy = 0; n = 0; }
    if (lum === top) { sx += p % width; sy += Math.floor(p / width); n += 1; }
  }
  return { result, hash, top, bright: [sx / n + 0.5, sy / n + 0.5],
           peak: volume ? m.peakScreen(volume, rotation, width, height) : null,
           cell: volume ? m.peakCell(volume) : null };
}"""


def volume_with_peak(y: int, x: int, z: int, faint: float = 0.2) -> list[float]:
    """A size^3 volume in [y, x, z] order: a faint ramp everywhere and 1 at (y, x, z)."""
    values = [faint * ((k * 7919) % 101) / 101 for k in range(SIZE**3)]
    values[(y * SIZE + x) * SIZE + z] = 1.0
    return values


def render(page: Any, values: list[float] | None, rotation: tuple[float, float], options: dict[str, Any] | None = None,
           width: int = W, height: int = H) -> dict[str, Any]:
    got: dict[str, Any] = page.evaluate(RENDER, [values, SIZE, {"yaw": rotation[0], "pitch": rotation[1]},
                                                 options or {}, width, height])
    return got


def project(point: tuple[float, float, float], rotation: tuple[float, float], width: int = W, height: int = H) -> tuple[float, float]:
    """volume.js's camera: world (X, Y, D) -> canvas pixels."""
    X, Y, D = point
    yaw, pitch = rotation
    u = X * math.cos(yaw) + D * math.sin(yaw)
    d = -X * math.sin(yaw) + D * math.cos(yaw)
    v = Y * math.cos(pitch) - d * math.sin(pitch)
    k = SCALE * min(width, height)
    return width / 2 + k * u, height / 2 + k * v


def project_cell(y: int, x: int, z: int, rotation: tuple[float, float]) -> tuple[float, float]:
    return project(((x + 0.5) / SIZE - 0.5, (y + 0.5) / SIZE - 0.5, (z + 0.5) / SIZE - 0.5), rotation)


ROTATIONS = [(0.0, 0.0), (math.pi / 2, 0.0), DEFAULT, (-1.2, -0.7), (3.0, 1.5)]
CELLS = [(3, 12, 5), (0, 0, 0), (15, 15, 15), (8, 2, 13)]


@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_the_peak_is_drawn_where_the_documented_camera_projects_it(
    tab: Watched, server: Server, cell: tuple[int, int, int], rotation: tuple[float, float]
) -> None:
    tab.page.goto(server.url)
    got = render(tab.page, volume_with_peak(*cell), rotation, BARE)
    want = project_cell(*cell, rotation)
    assert got["cell"] == list(cell)
    assert (got["peak"]["x"], got["peak"]["y"]) == pytest.approx(want, abs=1e-9)
    assert (got["result"]["peak"]["x"], got["result"]["peak"]["y"]) == pytest.approx(want, abs=1e-9)
    assert got["top"] == 3 * 255  # the brightest voxel is the grey palette's white
    one_mip_pixel = min(W, H) / got["result"]["resolution"]
    assert math.dist(got["bright"], want) <= one_mip_pixel
    assert tab.errors == []


def test_yaw_zero_is_the_frontal_radiograph_and_a_quarter_turn_the_left_lateral(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    right_anterior_top = (2, 1, 1)  # near the head, the patient's right, the front
    frontal = render(tab.page, volume_with_peak(*right_anterior_top), (0.0, 0.0), BARE)
    assert frontal["bright"][0] < W / 2 and frontal["bright"][1] < H / 2  # the patient's right on the screen's left
    lateral = render(tab.page, volume_with_peak(*right_anterior_top), (math.pi / 2, 0.0), BARE)
    assert lateral["bright"][0] < W / 2 and lateral["bright"][1] < H / 2  # anterior on the screen's left
    at = {label["text"]: label for label in frontal["result"]["labels"]}
    assert at["R"]["x"] < at["L"]["x"] and at["H"]["y"] < at["F"]["y"]
    assert not at["A"]["visible"] and not at["P"]["visible"]  # end-on: they would sit on the middle
    side = {label["text"]: label for label in lateral["result"]["labels"]}
    assert side["A"]["x"] < side["P"]["x"] and side["L"]["depth"] < 0 < side["R"]["depth"]  # seen from the left
    assert not side["R"]["visible"] and not side["L"]["visible"]
    assert tab.errors == []


def test_turning_the_view_changes_the_pixels_and_the_same_view_draws_the_same_pixels(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    values = volume_with_peak(4, 11, 3)
    first = render(tab.page, values, DEFAULT)
    again = render(tab.page, values, DEFAULT)
    turned = render(tab.page, values, (DEFAULT[0] + 0.3, DEFAULT[1]))
    tilted = render(tab.page, values, (DEFAULT[0], DEFAULT[1] - 0.3))
    assert first["hash"] == again["hash"]
    assert len({first["hash"], turned["hash"], tilted["hash"]}) == 3
    assert tab.errors == []


def test_a_new_volume_changes_the_pixels_and_moves_the_brightest_spot(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    before = render(tab.page, volume_with_peak(3, 3, 3), DEFAULT, BARE)
    after = render(tab.page, volume_with_peak(12, 12, 12), DEFAULT, BARE)
    assert before["hash"] != after["hash"]
    assert math.dist(before["bright"], project_cell(3, 3, 3, DEFAULT)) <= 2.5
    assert math.dist(after["bright"], project_cell(12, 12, 12, DEFAULT)) <= 2.5
    assert tab.errors == []


def test_the_six_labels_sit_beyond_the_cube_on_the_turned_axes_and_are_drawn(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    values = volume_with_peak(8, 8, 8)
    labelled = render(tab.page, values, DEFAULT)
    labels = labelled["result"]["labels"]
    assert [label["text"] for label in labels] == ["R", "L", "H", "F", "A", "P"]
    directions = {"R": (-1, 0, 0), "L": (1, 0, 0), "H": (0, -1, 0), "F": (0, 1, 0), "A": (0, 0, -1), "P": (0, 0, 1)}
    for label in labels:
        dx, dy, dz = directions[label["text"]]
        reach = 0.5 + 0.1  # volume.js LABEL_OFFSET beyond the cube's face
        assert (label["x"], label["y"]) == pytest.approx(project((reach * dx, reach * dy, reach * dz), DEFAULT), abs=1e-9)
        assert label["visible"]
    bare = render(tab.page, values, DEFAULT, {"labels": False})
    pixels = tab.page.evaluate(
        """(points) => { const ctx = document.getElementById('vol').getContext('2d');
             return points.map(([x, y]) => Array.from(ctx.getImageData(Math.round(x) - 5, Math.round(y) - 5, 11, 11).data)); }""",
        [[label["x"], label["y"]] for label in labels],
    )
    render(tab.page, values, DEFAULT)
    with_text = tab.page.evaluate(
        """(points) => { const ctx = document.getElementById('vol').getContext('2d');
             return points.map(([x, y]) => Array.from(ctx.getImageData(Math.round(x) - 5, Math.round(y) - 5, 11, 11).data)); }""",
        [[label["x"], label["y"]] for label in labels],
    )
    assert all(a != b for a, b in zip(pixels, with_text)), "every label changes the pixels where it sits"
    assert bare["hash"] != labelled["hash"]
    assert tab.errors == []


def test_an_all_zero_volume_draws_the_same_empty_frame_as_no_volume(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    zero = render(tab.page, [0.0] * SIZE**3, DEFAULT)
    none = render(tab.page, None, DEFAULT)
    assert zero["result"]["peak"] is None and zero["cell"] is None
    assert zero["hash"] == none["hash"]
    assert tab.errors == []


def test_a_volume_of_the_wrong_length_is_refused_by_the_renderer_and_the_view_with_the_lengths(tab: Watched, server: Server) -> None:
    tab.page.goto(server.url)
    message = tab.page.evaluate("""async () => {
      const m = await import('/js/draw/volume.js');
      const ctx = document.createElement('canvas').getContext('2d');
      try { m.renderVolume(ctx, { values: new Float32Array(100), size: 16 }, m.DEFAULT_ROTATION); return null; }
      catch (e) { return e.message; }
    }""")
    assert message == "a volume needs size^3 values; got 100 values for size 16"
    thrown = tab.page.evaluate("""async () => {
      const { VolumeView } = await import('/js/analyses/volume-view.js');
      const view = new VolumeView(document.createElement('canvas'));
      try { view.setVolume({ values: new Float32Array(8), size: 3 }); return null; }
      catch (e) { return e.message; }
    }""")
    assert thrown == "a volume needs size^3 values; got 8 values for size 3"
    assert tab.errors == []


MOUNT = """async ([values, size]) => {
  const { VolumeView } = await import('/js/analyses/volume-view.js');
  const canvas = document.createElement('canvas');
  canvas.id = 'view';
  canvas.width = 320; canvas.height = 300;
  canvas.style.cssText = 'position: fixed; left: 0; top: 0';
  document.body.appendChild(canvas);
  window.__view = new VolumeView(canvas);
  window.__view.setVolume({ values: Float32Array.from(values), size });
  window.__view.draw();
  return Number(canvas.dataset.frames);
}"""


def frames(page: Any) -> int:
    return int(page.get_attribute("#view", "data-frames"))


def wait_frames_above(page: Any, count: int) -> None:
    page.wait_for_function(f"() => Number(document.getElementById('view').dataset.frames) > {count}")


def test_dragging_the_view_turns_it_by_the_drag_and_redraws(tab: Watched, server: Server) -> None:
    page = tab.page
    page.goto(server.url)
    drawn = page.evaluate(MOUNT, [volume_with_peak(5, 10, 4), SIZE])
    assert page.get_attribute("#view", "data-yaw") == "0.6000"
    assert page.get_attribute("#view", "data-empty") == "false"
    before = canvas_digest(page, "#view")
    page.mouse.move(100, 100)
    page.mouse.down()
    page.mouse.move(150, 120, steps=5)
    page.mouse.up()
    wait_frames_above(page, drawn)
    page.wait_for_function("() => document.getElementById('view').dataset.pitch === '0.5000'")
    assert page.get_attribute("#view", "data-yaw") == "0.1000"  # 50 px right: yaw - 0.5
    assert canvas_digest(page, "#view") != before
    shoot(page, "volume-view-dragged")
    assert tab.errors == []


def test_arrow_keys_step_the_view_and_home_resets_it(tab: Watched, server: Server) -> None:
    page = tab.page
    page.goto(server.url)
    page.evaluate(MOUNT, [volume_with_peak(5, 10, 4), SIZE])
    page.focus("#view")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.getElementById('view').dataset.pitch === '0.4000'")
    assert page.get_attribute("#view", "data-yaw") == "0.7000"
    page.keyboard.press("Home")
    page.wait_for_function("() => document.getElementById('view').dataset.yaw === '0.6000'")
    assert page.get_attribute("#view", "data-pitch") == "0.3000"
    assert tab.errors == []


def test_set_volume_redraws_on_the_next_frame_and_null_leaves_the_empty_frame(tab: Watched, server: Server) -> None:
    page = tab.page
    page.goto(server.url)
    drawn = page.evaluate(MOUNT, [volume_with_peak(2, 2, 2), SIZE])
    before = canvas_digest(page, "#view")
    page.evaluate("(values) => window.__view.setVolume({ values: Float32Array.from(values), size: 16 })", volume_with_peak(13, 13, 13))
    wait_frames_above(page, drawn)
    assert canvas_digest(page, "#view") != before
    shown = frames(page)
    page.evaluate("() => window.__view.setVolume(null)")
    wait_frames_above(page, shown)
    assert page.get_attribute("#view", "data-empty") == "true"
    assert tab.errors == []


def test_the_view_exports_what_it_shows_as_png(tab: Watched, server: Server) -> None:
    page = tab.page
    page.goto(server.url)
    page.evaluate(MOUNT, [volume_with_peak(7, 4, 9), SIZE])
    got = page.evaluate("""async () => {
      const blob = await window.__view.toBlob();
      const head = Array.from(new Uint8Array(await blob.arrayBuffer()).subarray(0, 8));
      return { type: blob.type, size: blob.size, head, url: window.__view.toPNG() };
    }""")
    assert got["type"] == "image/png" and got["size"] > 1000
    assert bytes(got["head"]) == b"\x89PNG\r\n\x1a\n"
    assert got["url"].startswith("data:image/png;base64,")
    assert base64.b64decode(got["url"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert tab.errors == []
