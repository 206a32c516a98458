"""Loss bodies for the layout-inference tests: only read as source, never called (no TF import needed)."""

import functools

import numpy as np

GRID, BOXES, CLASSES = 7, 2, 20
EMB = 128
NUM_CLASSES = 10
QUANTILES = [0.1, 0.5, 0.9]
CLASS_WEIGHTS = np.array([1.0, 2.0, 5.0])
K = tf = ops = keras = scce = None  # the bodies below are parsed, never run


def per_sample_se(z, zhat):
    return K.sum(K.square(z - zhat), axis=-1)


def seed_slices(yz, yzhat):
    z = yz[:, 1]
    zhat = yzhat[:, 1]
    return per_sample_se(z, zhat)


def per_image_dice(y_true, y_pred):
    inter = K.sum(y_true * y_pred, axis=[1, 2, 3])
    return 1 - 2 * inter / (K.sum(y_true + y_pred, axis=[1, 2, 3]) + 1)


def token_ce(y_true, y_pred):
    mask = K.cast(K.not_equal(y_true, 0), "float32")
    ce = K.sparse_categorical_crossentropy(y_true, y_pred)
    return K.sum(ce * mask, axis=-1) / K.sum(mask, axis=-1)


def triplet(y_true, y_pred, alpha=0.2):
    a = y_pred[:, 0:EMB]
    p = y_pred[:, EMB : 2 * EMB]
    n = y_pred[:, 2 * EMB : 3 * EMB]
    return K.maximum(K.sum(K.square(a - p), axis=1) - K.sum(K.square(a - n), axis=1) + alpha, 0.0)


def gaussian_nll(y_true, y_pred):
    mu = y_pred[:, 0:1]
    log_var = y_pred[:, 1:2]
    return 0.5 * (log_var + K.square(y_true - mu) / K.exp(log_var))


def yolo(y_true, y_pred):
    pred = K.reshape(y_pred, (-1, GRID, GRID, BOXES * 5 + CLASSES))
    true = K.reshape(y_true, (-1, GRID, GRID, BOXES * 5 + CLASSES))
    return K.sum(K.square(true[..., 4] - pred[..., 4]), axis=[1, 2])


def cells_folded(y_true, y_pred):
    return K.mean(K.square(K.reshape(y_true, (-1, 8)) - K.reshape(y_pred, (-1, 8))), axis=-1)


def sparse_focal(y_true, y_pred):
    y = tf.one_hot(tf.cast(y_true, tf.int32), depth=NUM_CLASSES)
    return -K.sum(y * K.log(y_pred), axis=-1)


def quantile(y_true, y_pred):
    losses = []
    for i, q in enumerate(QUANTILES):
        e = y_true[:, 0] - y_pred[:, i]
        losses.append(K.maximum(q * e, (q - 1) * e))
    return K.mean(K.stack(losses, axis=-1), axis=-1)


def ssim_loss(y_true, y_pred):
    return 1 - tf.image.ssim(y_true, y_pred, max_val=1.0)


def anchors_box(y_true, y_pred):
    boxes, state = y_true[:, :, :4], y_true[:, :, 4]
    return K.sum(K.abs(boxes - y_pred), axis=[1, 2]) * 0 + K.sum(state, axis=-1)


def query_key(y_true, y_pred):
    query = y_pred[:, :EMB]
    key = y_pred[:, EMB:]
    return ops.sum(query * key, axis=-1)


def weighted_cce(y_true, y_pred):
    return -K.sum(CLASS_WEIGHTS * y_true * K.log(y_pred), axis=-1)


def no_hints(y_true, y_pred):
    return K.mean(K.square(y_true - y_pred), axis=-1)


dice_partial = functools.partial(per_image_dice)
third_column = lambda y_true, y_pred: K.mean(K.abs(y_true[:, 2] - y_pred[:, 2]))  # noqa: E731


def ctc_utterance(y_true, y_pred):
    labels = tf.sparse.from_dense(tf.cast(y_true, tf.int32))
    logit_length = tf.fill([tf.shape(y_pred)[0]], tf.shape(y_pred)[1])
    return tf.nn.ctc_loss(labels, tf.math.log(y_pred + 1e-7), None, logit_length, logits_time_major=False)


def cox_risk(y_true, y_pred):
    time, event = y_true[:, 0], y_true[:, 1]
    order = ops.argsort(-time)
    risk = ops.take(ops.squeeze(y_pred, axis=-1), order, axis=0)
    return -ops.sum((risk - ops.log(ops.cumsum(ops.exp(risk)))) * ops.take(event, order, axis=0))


def triplet_int_slices(y_true, y_pred):
    total = EMB * 3
    anchor = y_pred[:, 0:int(total * 1 / 3)]
    positive = y_pred[:, int(total * 1 / 3):int(total * 2 / 3)]
    return ops.sum(ops.square(anchor - positive), axis=1)


def normalised_cce(y_true, y_pred):
    y_pred /= K.sum(y_pred, axis=-1, keepdims=True)
    return -K.sum(y_true * K.log(K.clip(y_pred, K.epsilon(), 1.0)), -1)


def sigma_nll(y_true, y_pred):
    mu, sigma = y_pred[:, :1], y_pred[:, 1:]
    return ops.mean(ops.log(sigma) + ops.square(y_true - mu) / sigma, axis=-1)


def frame_ce(y_true, y_pred):
    mask = tf.cast(tf.not_equal(y_true, 0), y_pred.dtype)
    ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
    return tf.reduce_sum(ce * mask, axis=-1) / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)


PAD_ID = 0


def padded_objective(y_true, y_pred):
    per_token = scce(y_true, y_pred)  # a loss object built elsewhere: says nothing of the shapes
    return tf.reduce_sum(per_token * tf.cast(y_true != PAD_ID, tf.float32))


def quantile_heads(y_true, y_pred):
    err = ops.expand_dims(y_true, -1) - y_pred
    return ops.mean(ops.maximum(0.5 * err, -0.5 * err), axis=-1)


def quantile_heads_newaxis(y_true, y_pred):
    err = y_true[..., tf.newaxis] - y_pred
    return ops.mean(ops.abs(err), axis=-1)

VIEW_WIDTH = 64
PROTOTYPES = np.ones((6, 16), dtype="float32")


def _views(y_pred, width=VIEW_WIDTH):
    return y_pred[:, :width], y_pred[:, width:2 * width]


def view_cosine(y_true, y_pred):
    first, second = _views(y_pred)  # the helper's default reads a module constant
    return 1.0 - ops.sum(first * second, axis=-1)


def prototype_pull(y_true, y_pred):
    return ops.mean(ops.square(y_pred - K.dot(y_true, K.constant(PROTOTYPES))), axis=-1)


def packed_target_offset(y_true, y_pred):
    counts, offset = y_true[:, 0:1], y_true[:, 1:2]
    return ops.mean(ops.exp(y_pred + offset) - counts * (y_pred + offset), axis=-1)


def argmax_misses(y_true, y_pred):
    guess = ops.argmax(y_pred, axis=-1)
    return 1.0 - ops.cast(ops.equal(guess, ops.cast(y_true, guess.dtype)), "float32")


def _overlap_ratio(y_true, y_pred):
    return ops.sum(y_true * y_pred) / ops.sum(y_true + y_pred)


def dice_coef_loss(y_true, y_pred):
    return 1.0 - _overlap_ratio(y_true, y_pred)


def total_objective(y_true, y_pred):
    return ops.sum(ops.abs(y_true - y_pred)) + dice_coef_loss(y_true, y_pred)

MIXES = 4
SLICE_DIRS = np.ones((3, 8), dtype="float32")


def waveform_l1(y_true, y_pred):
    spec = lambda w: tf.abs(tf.signal.stft(w, frame_length=512, frame_step=128))  # noqa: E731
    return tf.reduce_mean(tf.abs(spec(y_true) - spec(y_pred)), axis=[1, 2])


def projected_gap(y_true, y_pred):
    a = tf.einsum("bnc,cd->bnd", y_true, SLICE_DIRS)
    b = tf.einsum("bnc,cd->bnd", y_pred, SLICE_DIRS)
    return tf.reduce_mean(tf.abs(a - b), axis=[1, 2])


def mixture_head(y_true, y_pred):
    logits, mu, log_sigma = tf.split(y_pred, [MIXES] * 3, axis=-1)
    return tf.reduce_logsumexp(logits - tf.square(y_true - mu) * tf.exp(-log_sigma), axis=-1)


def chamfer(y_true, y_pred):
    d = ops.sum(ops.square(ops.expand_dims(y_true, 2) - ops.expand_dims(y_pred, 1)), axis=-1)
    return ops.mean(ops.min(d, axis=-1), axis=-1)

FIELD_WEIGHTS = np.ones((1, 10, 1, 1), dtype="float32")
VOTES = 7
PARTS = 4


def field_mse(y_true, y_pred):
    return tf.reduce_mean(tf.square(y_true - y_pred) * FIELD_WEIGHTS, axis=[1, 2, 3])


def object_xent(y_true, y_pred):
    xent = keras.losses.CategoricalCrossentropy()
    return xent(y_true, y_pred)


def hard_votes(y_true, y_pred):
    return K.categorical_crossentropy(y_true, K.one_hot(K.argmax(y_pred, axis=-1), VOTES))


def parts_and_flags(y_true, y_pred):
    xy, flags = y_true[:, :2 * PARTS], y_true[:, 2 * PARTS:]
    return K.sum(K.repeat_elements(flags, 2, axis=-1) * K.square(xy - y_pred[:, :2 * PARTS]), axis=-1)


def step_answers(y_true, y_pred):
    right, real = y_true[..., 0], y_true[..., 1]
    return ops.sum((right - y_pred) ** 2 * real, axis=-1)
