"""A Label Studio labelling config (its XML), read once at /setup: which image field a task holds, the
BrushLabels (or PolygonLabels) tag the backend writes masks into with its label names, and the smart
KeyPointLabels tag whose points are clicks."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from unetkit.errors import ConfigError

EXAMPLE = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="mask" toName="image">
    <Label value="Object" background="#ff0000"/>
  </BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="Object" smart="true" background="#00ff00" showInline="true"/>
  </KeyPointLabels>
</View>"""


@dataclass(frozen=True)
class Tag:
    name: str
    to_name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LabelConfig:
    image: str  # the Image tag's name (results' to_name)
    value: str  # the task data key it reads ("image" for value="$image")
    output: Tag  # BrushLabels, or PolygonLabels where the config has no brush
    kind: str  # "brushlabels" | "polygonlabels": the result type the backend writes
    clicks: Tag | None  # the smart KeyPointLabels tag, if any

    def label_for(self, name: str | None) -> str:
        """The output label a click's label names (the same name), else the first."""
        if name is not None:
            for label in self.output.labels:
                if label.lower() == name.lower():
                    return label
        return self.output.labels[0]


def parse_config(xml: str) -> LabelConfig:
    """The parts the backend uses; a config it cannot serve is a ConfigError that says what to add."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise ConfigError(f"label config: not valid XML ({e})") from None
    tags = {el.tag.lower(): el for el in root.iter()}
    found = [el for el in root.iter() if el.tag.lower() == "image"]
    if not found:
        raise ConfigError(
            "label config: no <Image> tag; unetkit labels images (`unetkit label-studio --config` prints a config)"
        )
    image = found[0]
    value = image.get("value", "")
    if not value.startswith("$"):
        raise ConfigError(f"label config: the Image tag's value must name a task field, like $image (got {value!r})")
    kind = "brushlabels" if "brushlabels" in tags else "polygonlabels" if "polygonlabels" in tags else None
    if kind is None:
        raise ConfigError(
            "label config: no <BrushLabels> (or <PolygonLabels>) tag for unetkit's masks; add one with a <Label> "
            "per class (`unetkit label-studio --config` prints an example)"
        )
    output = _tag(tags[kind])
    if not output.labels:
        raise ConfigError(f'label config: <{tags[kind].tag} name="{output.name}"> has no <Label> children; add one')
    keypoints = tags.get("keypointlabels")
    return LabelConfig(
        image.get("name", "image"), value[1:], output, kind, _tag(keypoints) if keypoints is not None else None
    )


def _tag(el) -> Tag:
    labels = tuple(child.get("value", "") for child in el if child.tag.lower() == "label")
    return Tag(el.get("name", ""), el.get("toName", ""), labels)
