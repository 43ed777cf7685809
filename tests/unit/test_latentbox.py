"""LatentBox discovery ranks by scenario, then capability."""

from server.latentbox import LatentBox


def test_gen_art_image_ranks_midjourney_and_leonardo_first() -> None:
    ranked = [t["id"] for t in LatentBox().search("gen_art", "image")]
    assert ranked[:2] == ["latentbox:ai:image:midjourney", "latentbox:ai:image:leonardo"]
    assert "latentbox:ai:llm:chatgpt" not in ranked, "tools matching neither are left out"


def test_capability_alone_scores_lower_than_scenario() -> None:
    ranked = LatentBox().search("gen_art", "video")
    scores = {t["id"]: t["score"] for t in ranked}
    assert scores["latentbox:ai:video:runway"] == 1
    assert scores["latentbox:ai:image:midjourney"] == 2
    assert [t["score"] for t in ranked] == sorted((t["score"] for t in ranked), reverse=True)


def test_every_tool_has_the_fixture_fields() -> None:
    tools = LatentBox().tools
    assert len(tools) == 9
    assert all(
        {"id", "category", "scenarios", "capabilities", "constraints"} <= set(t) for t in tools
    )
