"""Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", §2): the
student matches the teacher's probabilities softened by a temperature T, plus the hard labels' cross
entropy, and a small demonstration that soft targets teach a student more than the teacher's argmax.

Logits are [rows, classes]; labels are class indices, one per row.
"""
from __future__ import annotations

import numpy as np

from .sampling import log_softmax


def _check(student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray, temperature: float,
           alpha: float) -> None:
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"student and teacher logits must both be [rows, classes], got {student_logits.shape} "
                         f"and {teacher_logits.shape}")
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(f"labels must hold one class per row, shape ({student_logits.shape[0]},), got {labels.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")


def distillation_loss(student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                      temperature: float = 2.0, alpha: float = 0.5) -> float:
    """mean over rows of alpha T^2 KL(p_t^T || p_s^T) + (1 - alpha) CE(label, p_s), with p^T = softmax(z / T)
    (Hinton et al. §2: the soft term is scaled by T^2 so its gradients keep their size as T changes)."""
    _check(student_logits, teacher_logits, labels, temperature, alpha)
    log_p_t, log_p_s = log_softmax(teacher_logits / temperature), log_softmax(student_logits / temperature)
    kl = (np.exp(log_p_t) * (log_p_t - log_p_s)).sum(axis=1)
    cross_entropy = -np.take_along_axis(log_softmax(student_logits), labels[:, None], axis=1)[:, 0]
    return float(np.mean(alpha * temperature ** 2 * kl + (1 - alpha) * cross_entropy))


def distillation_gradient(student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                          temperature: float = 2.0, alpha: float = 0.5) -> np.ndarray:
    """d loss / d z_s = [alpha T (p_s^T - p_t^T) + (1 - alpha) (p_s - onehot(label))] / rows.

    Per row, KL(p_t^T || p_s^T) = sum_i p_t,i log p_t,i - sum_i p_t,i log p_s,i^T, and the first sum does not
    depend on z_s. With log p_s,i^T = z_s,i / T - log sum_k exp(z_s,k / T),
        d/dz_s,j [-sum_i p_t,i log p_s,i^T] = -p_t,j / T + (sum_i p_t,i) p_s,j^T / T = (p_s,j^T - p_t,j^T) / T,
    Hinton et al.'s Eq. 2 (dC/dz_i = (q_i - p_i) / T); times alpha T^2 that is alpha T (p_s^T - p_t^T).
    The hard term is the same derivation at T = 1 with the one-hot label as target: p_s - onehot.
    """
    _check(student_logits, teacher_logits, labels, temperature, alpha)
    p_t, p_s_soft = np.exp(log_softmax(teacher_logits / temperature)), np.exp(log_softmax(student_logits / temperature))
    hard = np.exp(log_softmax(student_logits))
    hard[np.arange(len(labels)), labels] -= 1.0
    return (alpha * temperature * (p_s_soft - p_t) + (1 - alpha) * hard) / len(labels)


def mean_kl(teacher_logits: np.ndarray, student_logits: np.ndarray) -> float:
    """mean over rows of KL(softmax(z_t) || softmax(z_s)), in nats."""
    log_p_t, log_p_s = log_softmax(teacher_logits), log_softmax(student_logits)
    return float(np.mean((np.exp(log_p_t) * (log_p_t - log_p_s)).sum(axis=1)))


def soft_vs_hard_targets(train_rows: int = 40, test_rows: int = 2000, features: int = 16, classes: int = 8,
                         steps: int = 400, learning_rate: float = 0.5, temperature: float = 2.0,
                         seed: int = 0) -> dict:
    """{"soft targets": KL, "hard labels": KL}: held-out mean KL(teacher || student) of a linear-softmax
    student (logits x W) trained by plain gradient descent from W = 0 on a linear-softmax teacher's
    outputs for `train_rows` inputs, either on its softened probabilities (alpha = 1) or on its argmax
    (alpha = 0). Few rows: the soft targets carry the teacher's similarity structure, the labels only the
    winner (Hinton et al. §1, "dark knowledge")."""
    rng = np.random.default_rng(seed)
    teacher = 2.0 * rng.standard_normal((features, classes)) / np.sqrt(features)
    x_train, x_test = rng.standard_normal((train_rows, features)), rng.standard_normal((test_rows, features))
    z_teacher = x_train @ teacher
    labels = z_teacher.argmax(axis=1)
    kl = {}
    for name, alpha in (("soft targets", 1.0), ("hard labels", 0.0)):
        w = np.zeros((features, classes))
        for _ in range(steps):
            w -= learning_rate * x_train.T @ distillation_gradient(x_train @ w, z_teacher, labels, temperature, alpha)
        kl[name] = mean_kl(x_test @ teacher, x_test @ w)
    return kl
