"""Streaming the denoising (transformers' TextDiffusionStreamer and ours) and pictures of the
trajectory (PNG strip, GIF, HTML page)."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
import torch

from hf_ddlm.streamers import LiveDenoisingStreamer, TextDiffusionStreamer, TrajectoryStreamer
from hf_ddlm.visualization import decision_steps, save_trajectory, step_colour, trajectory_frames
from hf_ddlm.visualization.trajectory import _MASK_FILL, _SCALE

from .common import find_model, model_params, tiny_model, word_tokenizer

STEPS = 6
DRAFT = re.compile(r"\0337\033\[33m.*?\033\[0m")  # what TextDiffusionStreamer prints for a draft
ANSI = re.compile(r"\033\[[0-9;]*[A-Za-z]|\0337|\0338")


@pytest.fixture(scope="module")
def mdlm():
    return tiny_model(find_model("mdlm")[1])


def _prompted(model, streamer=None, **kw):
    prompt = torch.tensor([[3, 4, 5]])
    out = model.generate(
        input_ids=prompt,
        max_new_tokens=9,
        num_inference_steps=STEPS,
        seed=0,
        streamer=streamer,
        return_dict_in_generate=True,
        output_trajectory=True,
        **kw,
    )
    return prompt, out


@pytest.mark.parametrize("skip_prompt", [True, False])
def test_text_diffusion_streamer(mdlm, capsys, skip_prompt):
    tok = word_tokenizer()
    prompt, out = _prompted(mdlm, TextDiffusionStreamer(tok, skip_prompt=skip_prompt))
    printed = capsys.readouterr().out
    drafts = DRAFT.findall(printed)
    assert len(drafts) == len(out.trajectory) == STEPS + 1  # every step, plus the noise removal
    final = ANSI.sub("", DRAFT.sub("", printed))
    generated = out.sequences[0, prompt.shape[1] :]
    expected = tok.decode(generated) if skip_prompt else tok.decode(out.sequences[0])
    assert final == expected + "\n"
    # a draft shows the generated part only, masks included
    first = ANSI.sub("", drafts[0])
    assert first == tok.decode(out.trajectory[0][0, prompt.shape[1] :])


@pytest.mark.parametrize("config_class,model_class", model_params("streamer"))
def test_trajectory_streamer_sees_every_step(config_class, model_class):
    model = tiny_model(model_class)
    recorder = TrajectoryStreamer()
    prompt, out = _prompted(model, recorder)
    assert recorder.ended and torch.equal(recorder.prompt, prompt)
    assert torch.equal(torch.cat([recorder.prompt, recorder.final], dim=1), out.sequences)
    assert len(recorder.drafts) == len(out.trajectory) > 0
    for streamed, recorded in zip(recorder.trajectory(), out.trajectory):
        assert torch.equal(streamed, recorded)


def test_infilling_streams_the_whole_canvas(mdlm):
    recorder = TrajectoryStreamer()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10]])
    holes = torch.tensor([[False, True, True, False, False, True, False, False]])
    out = mdlm.generate(input_ids=ids, infill_mask=holes, num_inference_steps=4, seed=1, streamer=recorder)
    assert recorder.prompt.shape == (1, 0)
    assert torch.equal(recorder.final, out) and recorder.drafts[0].shape == ids.shape


def test_live_view_redraws_in_place_and_ends_with_the_text(mdlm):
    tok = word_tokenizer()
    screen = io.StringIO()
    view = LiveDenoisingStreamer(
        tok,
        mask_token_id=mdlm.config.mask_token_id,
        total_steps=STEPS + 1,
        file=screen,
        interactive=True,
        min_interval=0.0,
    )
    _, out = _prompted(mdlm, view)
    text = screen.getvalue()
    assert text.count("\033[J") == STEPS + 1  # every redraw after the first clears the old view
    assert f"{STEPS + 1}/{STEPS + 1}" in text and "masked 0/" in text
    assert "░" in text  # masked positions were shown while denoising
    last_view = ANSI.sub("", text.split("\033[J")[-1])
    shown = [int(i) for i in out.sequences[0] if int(i) not in tok.all_special_ids]  # specials are hidden
    assert last_view.rstrip("\n").split("\n")[-1] == "".join(tok.decode([i]) for i in shown)


def test_live_view_prints_plain_text_off_a_terminal(mdlm):
    tok = word_tokenizer()
    screen = io.StringIO()  # StringIO is not a tty: no ANSI, only the final text
    view = LiveDenoisingStreamer(tok, mask_token_id=mdlm.config.mask_token_id, total_steps=STEPS + 1, file=screen)
    _, out = _prompted(mdlm, view)
    assert screen.getvalue() == tok.decode(out.sequences[0], skip_special_tokens=True) + "\n"


# --- pictures ---------------------------------------------------------------------------------
def test_decision_steps_by_hand():
    m = 9
    trajectory = [
        torch.tensor([[m, m, m, 4]]),
        torch.tensor([[m, 2, m, 4]]),
        torch.tensor([[5, 2, 7, 4]]),  # position 2 changes again later (uniform-style)
        torch.tensor([[5, 2, 6, 4]]),
    ]
    assert decision_steps(trajectory).tolist() == [[2, 1, 3, 0]]
    fixed = torch.tensor([False, False, False, True])
    assert decision_steps(trajectory, fixed).tolist() == [[2, 1, 3, -1]]
    with pytest.raises(ValueError, match="fixed must have the canvas shape"):
        decision_steps(trajectory, torch.tensor([True, False]))


def test_step_colours_span_the_scale():
    assert step_colour(0.0) == _SCALE[0] and step_colour(1.0) == _SCALE[-1]
    assert step_colour(-1) == _SCALE[0] and step_colour(2) == _SCALE[-1]


def test_png_gif_and_html(mdlm, tmp_path):
    from PIL import Image

    tok = word_tokenizer()
    prompt, out = _prompted(mdlm)
    kw = {"mask_token_id": mdlm.config.mask_token_id, "prompt_length": prompt.shape[1]}
    frames = trajectory_frames(out.trajectory, tok, **kw)
    assert len(frames) == len(out.trajectory)

    def has_mask_box(image):  # a box is hundreds of pixels; anti-aliased text gives only a few greys
        return sum(n for n, c in image.getcolors(1 << 20) if c == _MASK_FILL) > 200

    assert has_mask_box(frames[0]) and not has_mask_box(frames[-1])  # all decided at the end

    png = save_trajectory(tmp_path / "t.png", out.trajectory, tok, max_frames=4, **kw)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width == 960 and image.height > 4 * frames[-1].height
    gif = save_trajectory(tmp_path / "t.gif", out.trajectory, tok, **kw)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == len(out.trajectory)
    page = save_trajectory(tmp_path / "t.html", out.trajectory, tok, **kw).read_text()
    HTMLParser().feed(page)  # well-formed enough to parse
    assert '"decided": [-1, -1, -1' in page and "<script>" in page and "http" not in page.split("<body>")[1]


def test_bad_trajectory_arguments(tmp_path):
    with pytest.raises(ValueError, match="must end in .png, .gif or .html"):
        save_trajectory(tmp_path / "t.jpg", [torch.zeros(1, 3, dtype=torch.long)])
    with pytest.raises(ValueError, match="trajectory is empty"):
        save_trajectory(tmp_path / "t.html", [])
    with pytest.raises(ValueError, match="one shape"):
        decision_steps([torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)])
