import pytest
import yaml

from chatbot.yaml_errors import yaml_problem


def test_a_parse_error_gives_its_line_and_problem():
    with pytest.raises(yaml.YAMLError) as caught:
        yaml.safe_load("a: 1\nb: [2\n")
    line, problem = yaml_problem(caught.value)
    assert line == 3 and "expected ','" in problem


def test_an_error_without_a_position_gives_no_line():
    assert yaml_problem(yaml.YAMLError("broken")) == (None, "broken")
