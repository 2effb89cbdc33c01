"""template.yaml's generated per-line blocks are exactly those of the shipped line files."""

from __future__ import annotations

from pathlib import Path

from closedloop.line import known_lines
from closedloop_ops import line_template
from closedloop_ops.local.template import read_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_template_has_the_generated_blocks_of_every_line_file_and_no_other() -> None:
    # Given the template as checked in and the line files the layer ships
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    # Then regenerating its blocks from the line files changes nothing
    assert line_template.render(text, known_lines()) == text, "run: closedloop line template"


def test_each_line_file_has_its_condition_and_every_default_line_a_file() -> None:
    document = read_yaml(ROOT / "template.yaml")
    conditions = document["Conditions"]
    for line in known_lines():
        assert f"Serves{line_template.camel(line)}" in conditions
    default = document["Parameters"]["ModelLines"]["Default"].split(",")
    assert set(default) <= set(known_lines())


def test_a_block_is_the_same_for_every_line_but_its_names() -> None:
    # Given the blocks of two lines, without their feature groups (whose features are each line's own)
    loans = line_template.resources_block(["loans"]).replace(line_template.feature_group_block("loans"), "")
    churn = line_template.resources_block(["churn"]).replace(line_template.feature_group_block("churn"), "")
    # Then they differ only by the line's name
    assert loans.replace("Loans", "Churn").replace("loans", "churn") == churn
    assert "{line}" not in loans and "{camel}" not in loans


def test_a_line_with_a_feature_group_gets_it_in_its_block_under_its_condition() -> None:
    # Given the shipped loans line, which keeps its features in Feature Store
    block = line_template.feature_group_block("loans")
    # Then its block holds the group, named like its model group, with the line's prepared features
    assert block.startswith("  FeatureGroupLoans:\n    Condition: ServesLoans\n")
    assert "Fn::Sub: ${ResourcePrefix}-loans" in block and "RecordIdentifierFeatureName: application_id" in block
    assert "FeatureName: approved" not in block  # the label is never a feature
    assert block in line_template.resources_block(["loans"])
