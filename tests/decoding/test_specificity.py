import math

import numpy as np
import pytest

from chatbot.decoding.specificity import nidf


def test_nidf_scales_idf_between_the_commonest_and_the_rarest_held_piece():
    # 8 replies: id 1 in all of them, id 2 in 4, id 3 in 1, id 0 in none
    values = nidf(np.array([0, 8, 4, 1]))
    idf = [math.log(8 / 8), math.log(8 / 4), math.log(8 / 1)]  # log(replies / frequency)
    expected = [0.0, *[(v - min(idf)) / (max(idf) - min(idf)) for v in idf]]
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert values.dtype == np.float32


@pytest.mark.parametrize("frequencies", [[0, 0, 0], [0, 3, 3]])
def test_nidf_is_zero_when_no_piece_is_rarer_than_another(frequencies):
    np.testing.assert_array_equal(nidf(np.array(frequencies)), np.zeros(3, np.float32))
