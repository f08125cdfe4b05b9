"""Distillation loss: a value and a gradient worked by hand, the analytic gradient against finite differences,
and soft targets teaching a student more than hard labels."""
import numpy as np
import pytest

from infersim.kernels.distillation import distillation_gradient, distillation_loss, soft_vs_hard_targets

# One row, two classes, T = 2, alpha = 0.5, label 1.
# Teacher z_t = [0, 2 ln 3]: z_t / T = [0, ln 3], p_t^T = [1/4, 3/4].
# Student z_s = [0, 2 ln 2]: z_s / T = [0, ln 2], p_s^T = [1/3, 2/3]; at T = 1, [0, ln 4], p_s = [1/5, 4/5].
Z_T, Z_S, LABEL = np.array([[0.0, 2 * np.log(3)]]), np.array([[0.0, 2 * np.log(2)]]), np.array([1])


def test_loss_of_one_row_by_hand():
    # KL = 1/4 ln((1/4) / (1/3)) + 3/4 ln((3/4) / (2/3)) = 0.25 ln 0.75 + 0.75 ln 1.125
    #    = -0.07192051811 + 0.08833727674 = 0.01641675863; x alpha T^2 = 0.5 x 4 -> 0.03283351726.
    # CE = -ln(4/5) = 0.22314355131; x (1 - alpha) -> 0.11157177566. Sum 0.14440529292.
    assert distillation_loss(Z_S, Z_T, LABEL, temperature=2.0, alpha=0.5) == pytest.approx(0.14440529292, rel=1e-9)


def test_gradient_of_one_row_by_hand():
    # alpha T (p_s^T - p_t^T) = 0.5 x 2 x [1/3 - 1/4, 2/3 - 3/4] = [1/12, -1/12];
    # (1 - alpha) (p_s - onehot) = 0.5 x [1/5, 4/5 - 1] = [1/10, -1/10]; sum [11/60, -11/60].
    grad = distillation_gradient(Z_S, Z_T, LABEL, temperature=2.0, alpha=0.5)
    assert grad.tolist() == [pytest.approx([11 / 60, -11 / 60], rel=1e-12)]


@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (2.5, 0.3), (4.0, 1.0), (3.0, 0.0)])
def test_gradient_equals_central_finite_differences(temperature, alpha):
    rng = np.random.default_rng(0)
    z_s, z_t = 2 * rng.standard_normal((4, 6)), 2 * rng.standard_normal((4, 6))
    labels = rng.integers(0, 6, 4)
    step = 1e-5
    numeric = np.zeros_like(z_s)
    for index in np.ndindex(z_s.shape):
        up, down = z_s.copy(), z_s.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (distillation_loss(up, z_t, labels, temperature, alpha)
                          - distillation_loss(down, z_t, labels, temperature, alpha)) / (2 * step)
    analytic = distillation_gradient(z_s, z_t, labels, temperature, alpha)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-10)


def test_a_student_equal_to_its_teacher_pays_no_soft_loss():
    z = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    assert distillation_loss(z, z, np.array([0, 2]), temperature=3.0, alpha=1.0) == pytest.approx(0.0, abs=1e-15)


def test_soft_targets_teach_the_student_more_than_hard_labels():
    kl = soft_vs_hard_targets()
    assert kl["soft targets"] < 0.1 * kl["hard labels"]


def test_bad_distillation_arguments_are_refused():
    with pytest.raises(ValueError, match="temperature must be positive, got 0.0"):
        distillation_loss(Z_S, Z_T, LABEL, temperature=0.0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        distillation_gradient(Z_S, Z_T, LABEL, alpha=1.5)
    with pytest.raises(ValueError, match="labels must hold one class per row"):
        distillation_loss(Z_S, Z_T, np.array([1, 0]))
    with pytest.raises(ValueError, match="student and teacher logits must both be"):
        distillation_loss(Z_S, np.zeros((1, 3)), LABEL)
