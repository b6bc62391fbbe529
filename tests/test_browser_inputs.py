"""Pictures in the browser: a file chosen, dropped or pasted, shown with Remove and the
strength slider; Use as input and Edit from a job page; the mask editor painted with a
mouse and a finger and sent with the job; the inputs shown beside the result.

The stack, Chromium and the watch on every page: tests/browser.py.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser import (
    PHONE,
    SMALL,
    Pages,
    check_images,
    fill_form,
    new_card_id,
    wait_images_loaded,
)
from tests.procs import API, Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PREVIEW = "#picture-field .picture-img"
CANVAS = "#picture-field .mask-canvas"

# Builds a File in the page from base64 bytes, in a DataTransfer, and sends it as a drop on
# the drop zone or a paste on the page (events a test can make; the OS clipboard is not).
SEND_FILE = """([how, b64, name, type]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type}));
    if (how === "paste") {
        const target = document.activeElement || document.body;
        target.dispatchEvent(new ClipboardEvent("paste",
            {bubbles: true, cancelable: true, clipboardData: transfer}));
        return;
    }
    const zone = document.querySelector(".drop-zone");
    for (const type of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type,
            {bubbles: true, cancelable: true, dataTransfer: transfer}));
    }
}"""

# The alpha of the mask canvas at fractions of its size (0: nothing painted there).
# Read from a copy: reading the page's own canvas again and again makes Chrome warn.
PAINT_AT = """([selector, points]) => {
    const canvas = document.querySelector(selector);
    const copy = document.createElement("canvas");
    copy.width = canvas.width;
    copy.height = canvas.height;
    const ctx = copy.getContext("2d", {willReadFrequently: true});
    ctx.drawImage(canvas, 0, 0);
    return points.map(([fx, fy]) => ctx.getImageData(
        Math.floor(fx * canvas.width), Math.floor(fy * canvas.height), 1, 1).data[3]);
}"""


def png(size: tuple[int, int], color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def send_file(page: Page, how: str, data: bytes, name: str = "picture.png") -> None:
    page.evaluate(SEND_FILE, [how, base64.b64encode(data).decode(), name, "image/png"])


def natural_size(page: Page) -> list[int]:
    wait_images_loaded(page, PREVIEW)
    return page.locator(PREVIEW).evaluate("i => [i.naturalWidth, i.naturalHeight]")


def chosen_files(page: Page) -> list[str]:
    return page.locator("#image_file").evaluate("i => [...i.files].map(f => f.name)")


def inputs_of(stack: Stack, job_id: str) -> dict[str, str]:
    return {item["role"]: item["id"] for item in stack.status(job_id)["inputs"]}


def upload_picture(stack: Stack, upload_id: str) -> Image.Image:
    response = stack.get(f"{API}/uploads/{upload_id}")
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def choose_model_taking(page: Page, inputs: str) -> None:
    """Choose the model again, its menu entry saying it takes these pictures."""
    with page.expect_response(re.compile(r"/partials/advanced")):
        page.locator("#model option:checked").evaluate(
            "(o, inputs) => { o.dataset.inputs = inputs;"
            " o.parentElement.dispatchEvent(new Event('change', {bubbles: true})); }",
            inputs,
        )


def paint(page: Page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through fractions of the canvas's box."""
    box = page.locator(CANVAS).bounding_box()
    assert box is not None
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def test_a_chosen_file_shows_with_remove_and_the_strength_slider(page: Page, stack: Stack) -> None:
    """The file chooser: preview, strength slider, "As the picture", Remove; then the job."""
    page.goto("/")
    expect(page.locator(".picture-preview")).to_be_hidden()
    expect(page.locator("#strength-slider")).to_be_hidden()
    expect(page.locator("#aspect_ratio")).to_have_value("1:1")
    # By keyboard: after Generate comes the file field.
    page.get_by_role("button", name="Generate").focus()
    page.keyboard.press("Tab")
    expect(page.locator("#image_file")).to_be_focused()

    page.locator("#image_file").set_input_files(
        files=[
            {"name": "wide.png", "mimeType": "image/png", "buffer": png((300, 150), (30, 90, 200))}
        ]
    )
    expect(page.locator(PREVIEW)).to_be_visible()
    assert natural_size(page) == [300, 150]
    expect(page.locator(".drop-zone")).to_be_hidden()
    expect(page.locator("#aspect_ratio")).to_have_value("")
    # A model that takes no picture (as its menu entry says): the field goes, sending nothing.
    choose_model_taking(page, "")
    expect(page.locator("#picture-field")).to_be_hidden()
    expect(page.locator("#image_file")).to_be_disabled()
    expect(page.locator("#aspect_ratio")).to_have_value("1:1")
    choose_model_taking(page, "image mask")
    expect(page.locator(PREVIEW)).to_be_visible()
    expect(page.locator("#image_file")).to_be_enabled()
    assert chosen_files(page) == ["wide.png"]
    expect(page.locator("#aspect_ratio")).to_have_value("")  # "As the picture" again
    slider = page.locator("#strength-slider")
    expect(slider).to_be_visible()
    expect(slider).to_have_value("0.8")
    expect(page.locator("#strength-value")).to_have_text("0.80")
    slider.focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#strength-value")).to_have_text("0.70")
    expect(page.locator("#f-prompt_strength")).to_have_value("0.7")

    page.get_by_role("button", name="Remove picture").click()
    expect(page.locator(".picture-preview")).to_be_hidden()
    expect(page.locator("#image_file")).to_be_focused()
    assert chosen_files(page) == []
    expect(page.locator("#aspect_ratio")).to_have_value("1:1")
    expect(page.locator(".js-picture-ratio")).to_be_disabled()

    page.locator("#image_file").set_input_files(
        files=[
            {"name": "wide.png", "mimeType": "image/png", "buffer": png((300, 150), (30, 90, 200))}
        ]
    )
    expect(page.locator(PREVIEW)).to_be_visible()
    fill_form(page, "a blue field, as a meadow", num_inference_steps=1)
    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, "a blue field, as a meadow")
    status = stack.wait_terminal([job_id])[job_id]
    assert status["status"] == "completed", status
    assert [item["role"] for item in status["inputs"]] == ["image"]
    assert status["parameters"]["prompt_strength"] == 0.7
    width, height = status["provider_parameters"]["width"], status["provider_parameters"]["height"]
    assert width == 2 * height, "the job took the picture's shape"
    assert upload_picture(stack, status["inputs"][0]["id"]).size == (300, 150)
    # The card shows the input in a corner of the result; the form keeps the picture.
    card_input = page.locator(f"#card-{job_id} img.card-input")
    expect(card_input).to_have_attribute("alt", "Input picture")
    expect(page.locator(f"#card-{job_id} img.card-img")).to_be_visible(timeout=5000)
    wait_images_loaded(page, f"#card-{job_id} img")
    expect(page.locator(PREVIEW)).to_be_visible()
    check_images(page)


def test_drop_and_paste_take_a_picture(page: Page, stack: Stack) -> None:
    """A picture dropped on the form or pasted on the page is the form's file."""
    page.goto("/")
    send_file(page, "drop", png((120, 90), (220, 60, 20)), "dropped.png")
    expect(page.locator(PREVIEW)).to_be_visible()
    assert natural_size(page) == [120, 90]
    assert chosen_files(page) == ["dropped.png"]
    expect(page.locator("#picture-field")).not_to_have_class(re.compile(r"\bdragging\b"))

    # Pasted into the prompt, a picture is not taken (it is a text field)...
    page.locator("textarea[name=prompt]").focus()
    send_file(page, "paste", png((64, 64), (10, 200, 10)), "pasted.png")
    assert chosen_files(page) == ["dropped.png"]
    # ...pasted anywhere else it replaces the one there.
    page.locator("textarea[name=prompt]").blur()
    send_file(page, "paste", png((64, 64), (10, 200, 10)), "pasted.png")
    expect(page.locator(PREVIEW)).to_have_attribute("width", "64")
    assert chosen_files(page) == ["pasted.png"]

    # Something that is not a picture is refused at once, and the picture stays.
    page.evaluate(
        SEND_FILE, ["drop", base64.b64encode(b"hello").decode(), "notes.txt", "text/plain"]
    )
    expect(page.locator(".js-picture-problem")).to_have_text(
        "That is not a PNG, JPEG or WebP picture."
    )
    assert chosen_files(page) == ["pasted.png"]
    expect(page.locator(PREVIEW)).to_be_visible()

    fill_form(page, "a pasted green square", num_inference_steps=1)
    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, "a pasted green square")
    assert stack.wait_terminal([job_id])[job_id]["status"] == "completed"
    (upload_id,) = inputs_of(stack, job_id).values()
    assert upload_picture(stack, upload_id).size == (64, 64)


def test_use_as_input_then_paint_a_mask_and_submit(
    page: Page, pages: Pages, stack: Stack, city: dict[str, Any]
) -> None:
    """Use as input opens the form with the job's picture; the mask painted over it is sent
    with the job (white where painted, black elsewhere), and kept if the form comes back."""
    media = city["media"][0]
    page.goto(f"/jobs/{city['id']}")
    page.get_by_role("link", name="Use as input").click()
    expect(page).to_have_url(re.compile(rf"/\?image={media['id']}$"))
    expect(page.locator(PREVIEW)).to_have_attribute("src", f"/media/{media['id']}")
    assert natural_size(page) == [media["width"], media["height"]]
    expect(page.locator("#picture-field input[name=image]")).to_have_value(media["id"])
    expect(page.locator("#mask-tools")).to_be_hidden()

    page.get_by_role("button", name="Paint a mask").click()
    expect(page.locator("#mask-tools")).to_be_visible()
    expect(page.locator(CANVAS)).to_be_visible()
    assert page.locator(CANVAS).evaluate("c => [c.width, c.height]") == [
        media["width"],
        media["height"],
    ]
    # The brush: [ and ] change it, as does its slider.
    page.locator(CANVAS).hover()
    page.keyboard.press("]")
    expect(page.locator(".js-brush-value")).to_have_text("51")
    page.keyboard.press("[")
    expect(page.locator(".js-brush-value")).to_have_text("40")

    # A stroke, taken back (Ctrl+Z), another; a stroke wiped by Clear, taken back (Undo).
    paint(page, [(0.1, 0.2), (0.4, 0.2)])
    assert page.evaluate(PAINT_AT, [CANVAS, [[0.25, 0.2]]]) == [255]
    page.keyboard.press("Control+z")
    assert page.evaluate(PAINT_AT, [CANVAS, [[0.25, 0.2]]]) == [0]
    paint(page, [(0.1, 0.5), (0.4, 0.5)])
    page.get_by_role("button", name="Clear").click()
    assert page.evaluate(PAINT_AT, [CANVAS, [[0.25, 0.5]]]) == [0]
    page.get_by_role("button", name="Undo").click()
    assert page.evaluate(PAINT_AT, [CANVAS, [[0.25, 0.5], [0.8, 0.5]]]) == [255, 0]
    # Erase takes paint away where it goes.
    page.get_by_role("button", name="Erase").click()
    expect(page.get_by_role("button", name="Erase")).to_have_attribute("aria-pressed", "true")
    paint(page, [(0.35, 0.3), (0.35, 0.7)])
    assert page.evaluate(PAINT_AT, [CANVAS, [[0.35, 0.5], [0.2, 0.5]]]) == [0, 255]

    # Sent without a prompt: the form comes back with the picture and the mask kept.
    pages.watch(page).expect_console(r"status of 422")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#prompt-error")).to_have_text(re.compile("^String should"))
    expect(page.locator(PREVIEW)).to_have_attribute("src", f"/media/{media['id']}")
    expect(page.locator(CANVAS)).to_have_attribute("data-mask-url", re.compile(r"^/uploads/"))
    expect(page.locator("#mask-tools")).to_be_visible()
    page.wait_for_function(  # the kept mask is drawn in again once it has loaded
        f"([s, points]) => ({PAINT_AT})([s, points])[0] === 255", arg=[CANVAS, [[0.2, 0.5]]]
    )
    assert page.evaluate(PAINT_AT, [CANVAS, [[0.35, 0.5], [0.25, 0.2], [0.8, 0.5]]]) == [0, 0, 0]
    kept = page.locator("#picture-field input[name=mask]").input_value()
    assert kept, "the mask is kept as an upload"

    fill_form(page, "the city, repainted on the left", num_inference_steps=1)
    page.get_by_role("button", name="Generate").click()
    job_id = new_card_id(page, "the city, repainted on the left")
    status = stack.wait_terminal([job_id])[job_id]
    assert status["status"] == "completed", status
    found = inputs_of(stack, job_id)
    assert list(found) == ["image", "mask"]
    mask = upload_picture(stack, found["mask"]).convert("L")
    assert mask.size == (media["width"], media["height"])
    w, h = mask.size
    painted = [mask.getpixel((int(fx * w), int(fy * h))) for fx, fy in ((0.2, 0.5), (0.15, 0.5))]
    untouched = [
        mask.getpixel((int(fx * w), int(fy * h)))
        for fx, fy in ((0.35, 0.5), (0.25, 0.2), (0.8, 0.5), (0.5, 0.9))
    ]
    assert painted == [255, 255] and untouched == [0, 0, 0, 0], (painted, untouched)

    # The job page shows the picture and the mask beside the result.
    page.goto(f"/jobs/{job_id}")
    inputs = page.locator(".detail-inputs img")
    expect(inputs).to_have_count(2)
    expect(page.locator(".detail-inputs figcaption")).to_have_text(["Input picture", "Mask"])
    wait_images_loaded(page)
    check_images(page)


def test_edit_opens_the_mask_editor_and_a_finger_paints(
    pages: Pages, stack: Stack, city: dict[str, Any]
) -> None:
    """On a phone: Edit opens the editor on the picture; a finger paints without scrolling."""
    phone = pages.new(viewport=PHONE, is_mobile=True, has_touch=True)
    phone.goto(f"/jobs/{city['id']}")
    phone.get_by_role("link", name="Edit", exact=True).click()
    expect(phone).to_have_url(re.compile(rf"/\?image={city['media'][0]['id']}&edit=1$"))
    expect(phone.locator("#mask-tools")).to_be_visible()
    expect(phone.locator(CANVAS)).to_be_visible()
    canvas = phone.locator(CANVAS)
    canvas.scroll_into_view_if_needed()
    assert canvas.evaluate("c => getComputedStyle(c).touchAction") == "none"
    box = canvas.bounding_box()
    assert box is not None
    scrolled = phone.evaluate("window.scrollY")
    y = box["y"] + box["height"] * 0.5
    touches = [(box["x"] + box["width"] * f, y) for f in (0.2, 0.3, 0.4, 0.5, 0.6)]
    cdp = phone.context.new_cdp_session(phone)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point(touches[0])]})
    for at in touches[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point(at)]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert phone.evaluate(PAINT_AT, [CANVAS, [[0.4, 0.5], [0.4, 0.1]]]) == [255, 0]
    assert phone.evaluate("window.scrollY") == scrolled, "painting scrolled the page"

    fill_form(phone, "the city, touched up", **SMALL)
    phone.get_by_role("button", name="Generate").click()
    job_id = new_card_id(phone, "the city, touched up")
    assert stack.wait_terminal([job_id])[job_id]["status"] == "completed"
    assert list(inputs_of(stack, job_id)) == ["image", "mask"]


def point(at: tuple[float, float]) -> dict[str, float]:
    return {"x": at[0], "y": at[1], "radiusX": 4, "radiusY": 4, "force": 1, "id": 1}
