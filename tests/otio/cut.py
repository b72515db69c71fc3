"""Writes the OpenTimelineIO timeline of tests/tests/otio.rs with the
`opentimelineio` package: the reference writer, so that what the host reads is
what editorial tools produce.

usage: cut.py OUT.otio MEDIA_DIR [--absolute]

Media are named relative to the timeline's folder (MEDIA_DIR must be it),
except c.mov, named by a file:// URL; with --absolute, every one is a
file:// URL.

MEDIA_DIR holds a.mov (25 fps), b.mov (30 fps), c.mov (24000/1001 fps),
tone.wav and seq/f.1001.png … f.1020.png (25 fps), as the test makes them.
"""

import os
import sys

import opentimelineio as otio

RT = otio.opentime.RationalTime
TR = otio.opentime.TimeRange
NTSC = 24000 / 1001


def rng(start, dur, rate):
    return TR(RT(start, rate), RT(dur, rate))


ABSOLUTE = None


def url(name):
    if ABSOLUTE:
        return "file://" + os.path.join(ABSOLUTE, name)
    return name


def media(url, frames, rate):
    return otio.schema.ExternalReference(
        target_url=url, available_range=rng(0, frames, rate)
    )


def main(out, media_dir):
    tl = otio.schema.Timeline(name="otio-cut")
    tl.global_start_time = RT(90000, 25)  # 01:00:00:00
    tl.metadata["deliver"] = {
        "canvas": {
            "width": 320,
            "height": 180,
            "frame_rate": 25,
            "background": "#404040",
        },
        "deliverables": [
            {
                "preset": "web/h264-1080p",
                "name": "web",
                "overrides": {"video": {"width": 320, "height": 180, "options": {"crf": 12}}},
            }
        ],
    }
    v1 = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    tl.tracks.append(v1)

    a = otio.schema.Clip(name="a", media_reference=media(url("a.mov"), 100, 25),
                         source_range=rng(10, 30, 25))
    a.markers.append(otio.schema.Marker(name="check grade",
                                        marked_range=rng(0, 1, 25)))
    v1.append(a)
    v1.append(otio.schema.Transition(
        transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
        in_offset=RT(5, 25), out_offset=RT(6, 25)))
    v1.append(otio.schema.Clip(name="b", media_reference=media(url("b.mov"), 90, 30),
                               source_range=rng(30, 45, 30)))
    v1.append(otio.schema.Gap(source_range=rng(0, 10, 25)))
    c_url = "file://" + os.path.abspath(os.path.join(media_dir, "c.mov"))
    v1.append(otio.schema.Clip(name="c", media_reference=media(c_url, 72, NTSC),
                               source_range=rng(12, 24, NTSC)))

    # A nested stack, trimmed to 20 of its frames.
    inner = otio.schema.Track(name="inner", kind=otio.schema.TrackKind.Video)
    inner.append(otio.schema.Clip(name="a-nested", media_reference=media(url("a.mov"), 100, 25),
                                  source_range=rng(50, 30, 25)))
    nested = otio.schema.Stack(name="comp", source_range=rng(5, 20, 25))
    nested.append(inner)
    v1.append(nested)

    v1.append(otio.schema.Clip(
        name="orange",
        media_reference=otio.schema.GeneratorReference(
            generator_kind="SolidColor", parameters={"color": "#ff8000"}),
        source_range=rng(0, 10, 25)))

    seq = otio.schema.ImageSequenceReference(
        target_url_base=url("seq/"), name_prefix="f.", name_suffix=".png",
        start_frame=1001, frame_step=1, rate=25, frame_zero_padding=4,
        available_range=rng(0, 20, 25))
    v1.append(otio.schema.Clip(name="seq", media_reference=seq,
                               source_range=rng(2, 10, 25)))

    fast = otio.schema.Clip(name="fast", media_reference=media(url("a.mov"), 100, 25),
                            source_range=rng(0, 10, 25))
    fast.effects.append(otio.schema.LinearTimeWarp(time_scalar=2.0))
    v1.append(fast)
    held = otio.schema.Clip(name="held", media_reference=media(url("a.mov"), 100, 25),
                            source_range=rng(60, 5, 25))
    held.effects.append(otio.schema.FreezeFrame())
    v1.append(held)

    a1 = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    a1.append(otio.schema.Clip(name="tone", media_reference=media(url("tone.wav"), 200, 25),
                               source_range=rng(0, 158, 25)))
    tl.tracks.append(a1)
    otio.adapters.write_to_file(tl, out)


if __name__ == "__main__":
    if "--absolute" in sys.argv[3:]:
        ABSOLUTE = os.path.abspath(sys.argv[2])
    main(sys.argv[1], sys.argv[2])
