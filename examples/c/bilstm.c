/* A small C99 port of Keras 3 LSTM and Bidirectional(LSTM) inference: see bilstm.h. */
#include "bilstm.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- activations ------------------------------------------------------------------------- */

static const struct {
  const char *name;
  bl_activation act;
} ACTIVATIONS[] = {
  {"linear", BL_ACT_LINEAR}, {"tanh", BL_ACT_TANH}, {"sigmoid", BL_ACT_SIGMOID},
  {"hard_sigmoid", BL_ACT_HARD_SIGMOID}, {"relu", BL_ACT_RELU}, {"relu6", BL_ACT_RELU6},
  {"leaky_relu", BL_ACT_LEAKY_RELU}, {"softplus", BL_ACT_SOFTPLUS}, {"softsign", BL_ACT_SOFTSIGN},
  {"elu", BL_ACT_ELU}, {"selu", BL_ACT_SELU}, {"celu", BL_ACT_CELU},
  {"exponential", BL_ACT_EXPONENTIAL}, {"gelu", BL_ACT_GELU}, {"silu", BL_ACT_SILU},
  {"swish", BL_ACT_SILU}, {"hard_silu", BL_ACT_HARD_SILU}, {"hard_swish", BL_ACT_HARD_SILU},
  {"mish", BL_ACT_MISH}, {"log_sigmoid", BL_ACT_LOG_SIGMOID}, {"tanh_shrink", BL_ACT_TANH_SHRINK},
  {"hard_tanh", BL_ACT_HARD_TANH}, {"soft_shrink", BL_ACT_SOFT_SHRINK},
  {"hard_shrink", BL_ACT_HARD_SHRINK}, {"squareplus", BL_ACT_SQUAREPLUS},
  {"sparse_plus", BL_ACT_SPARSE_PLUS}, {"sparse_sigmoid", BL_ACT_SPARSE_SIGMOID},
};

bl_activation bl_activation_from_name(const char *name) {
  size_t i;
  if (name == NULL || strcmp(name, "None") == 0) return BL_ACT_LINEAR; /* activation=None */
  for (i = 0; i < sizeof ACTIVATIONS / sizeof ACTIVATIONS[0]; i++)
    if (strcmp(ACTIVATIONS[i].name, name) == 0) return ACTIVATIONS[i].act;
  return BL_ACT_UNKNOWN;
}

/* Clipping that lets NaN through, as NumPy's clip does. */
static double clip(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

static double sigmoid(double x) { return 0.5 * tanh(0.5 * x) + 0.5; } /* no overflow */
static double hard_sigmoid3(double x) { return clip(x / 6.0 + 0.5, 0.0, 1.0); }
static double relu(double x) { return x > 0.0 || x != x ? x : 0.0; }
static double softplus(double x) { return relu(x) + log1p(exp(-fabs(x))); } /* log(1 + e^x) */

double bl_activate(bl_activation a, double x, int keras2_hard_sigmoid) {
  const double selu_alpha = 1.6732632423543772848170429916717;
  const double selu_scale = 1.0507009873554804934193349852946;
  double s;
  switch (a) {
    case BL_ACT_LINEAR: return x;
    case BL_ACT_TANH: return tanh(x);
    case BL_ACT_SIGMOID: return sigmoid(x);
    case BL_ACT_HARD_SIGMOID:
      return keras2_hard_sigmoid ? clip(0.2 * x + 0.5, 0.0, 1.0) : hard_sigmoid3(x);
    case BL_ACT_RELU: return relu(x);
    case BL_ACT_RELU6: { double r = relu(x); return r > 6.0 ? 6.0 : r; }
    case BL_ACT_LEAKY_RELU: return x >= 0.0 ? x : 0.2 * x;
    case BL_ACT_SOFTPLUS: return softplus(x);
    case BL_ACT_SOFTSIGN: return x / (1.0 + fabs(x));
    case BL_ACT_ELU: return x >= 0.0 ? x : expm1(x);
    case BL_ACT_SELU: return selu_scale * (x >= 0.0 ? x : selu_alpha * expm1(x));
    case BL_ACT_CELU: return relu(x) + expm1(x < 0.0 ? x : 0.0);
    case BL_ACT_EXPONENTIAL: return exp(x);
    case BL_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); /* exact form, Keras's default */
    case BL_ACT_SILU: return x * sigmoid(x);
    case BL_ACT_HARD_SILU: return x * hard_sigmoid3(x);
    case BL_ACT_MISH: return x * tanh(softplus(x));
    case BL_ACT_LOG_SIGMOID: return -softplus(-x);
    case BL_ACT_TANH_SHRINK: return x - tanh(x);
    case BL_ACT_HARD_TANH: return clip(x, -1.0, 1.0);
    case BL_ACT_SOFT_SHRINK: return x > 0.5 ? x - 0.5 : (x < -0.5 ? x + 0.5 : (x != x ? x : 0.0));
    case BL_ACT_HARD_SHRINK: return fabs(x) > 0.5 || x != x ? x : 0.0;
    case BL_ACT_SQUAREPLUS:
      s = hypot(x, 2.0); /* sqrt(x^2 + 4), no overflow; no cancellation for x < 0 */
      return x >= 0.0 ? (x + s) / 2.0 : (x != x ? x : 2.0 / (s - x));
    case BL_ACT_SPARSE_PLUS:
      return x <= -1.0 ? 0.0 : (x < 1.0 ? 0.25 * (x + 1.0) * (x + 1.0) : x);
    case BL_ACT_SPARSE_SIGMOID:
      return x <= -1.0 ? 0.0 : (x >= 1.0 ? 1.0 : 0.5 * (x + 1.0));
    case BL_ACT_UNKNOWN: break;
  }
  return NAN;
}

/* ---- output precision -------------------------------------------------------------------- */

int bl_precision_from_policy(const char *policy) {
  if (policy == NULL) return BL_PRECISION_FULL;
  if (strcmp(policy, "float32") == 0 || strcmp(policy, "float64") == 0) return BL_PRECISION_FULL;
  if (strcmp(policy, "float16") == 0 || strcmp(policy, "mixed_float16") == 0) return BL_PRECISION_FLOAT16;
  if (strcmp(policy, "bfloat16") == 0 || strcmp(policy, "mixed_bfloat16") == 0) return BL_PRECISION_BFLOAT16;
  return -1;
}

static double round_float16(double v) {
  int e, q;
  double a = fabs(v);
  if (!(a > 0.0) || isinf(a)) return v;              /* 0, NaN, infinities */
  if (a >= 65520.0) return copysign(INFINITY, v);   /* halfway above 65504 rounds up to inf */
  (void)frexp(a, &e);                               /* a in [2^(e-1), 2^e) */
  q = e - 11;                                       /* 11 significant bits */
  if (q < -24) q = -24;                             /* subnormal spacing */
  return copysign(ldexp(nearbyint(ldexp(a, -q)), q), v);
}

static double round_bfloat16(double v) {
  float f = (float)v; /* as Keras: to float32 first, then to bfloat16, both half to even */
  uint32_t bits;
  if (!isfinite(f)) return f;
  memcpy(&bits, &f, sizeof bits);
  bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  memcpy(&f, &bits, sizeof f);
  return f;
}

double bl_round(double v, bl_precision p) {
  switch (p) {
    case BL_PRECISION_FLOAT16: return round_float16(v);
    case BL_PRECISION_BFLOAT16: return round_bfloat16(v);
    case BL_PRECISION_FULL: break;
  }
  return v;
}

static void round_all(double *a, size_t count, bl_precision p) {
  size_t i;
  if (p == BL_PRECISION_FULL || a == NULL) return;
  for (i = 0; i < count; i++) a[i] = bl_round(a[i], p);
}

/* ---- LSTM -------------------------------------------------------------------------------- */

void bl_lstm_reset_state(bl_lstm *l) {
  if (l->state_batch > 0) {
    memset(l->h_state, 0, sizeof(double) * (size_t)l->state_batch * (size_t)l->units);
    memset(l->c_state, 0, sizeof(double) * (size_t)l->state_batch * (size_t)l->units);
  }
}

void bl_lstm_free(bl_lstm *l) {
  free(l->h_state);
  free(l->c_state);
  l->h_state = l->c_state = NULL;
  l->state_batch = 0;
}

int bl_lstm_run(bl_lstm *l, int B, int T, const double *x, const unsigned char *mask,
                const double *h0, const double *c0, double *seq, double *last, double *h, double *c) {
  const int n = l->units, D = l->input_dim, G = 4 * l->units;
  const size_t state = (size_t)B * (size_t)n;
  /* The known-deviation quirk: the scan runs without zero_output_for_mask, then the sequence is
   * zeroed afterwards with the mask in input order. */
  const int d_quirk = l->quirk_unroll_mask_reversed_zeroing && l->unroll && l->zero_output_for_mask &&
                      l->go_backwards && seq != NULL && mask != NULL;
  const int zofm = l->zero_output_for_mask && !d_quirk;
  double *z, *out;
  int t, b, j, k;
  if (B < 1 || T < 1 || n < 1 || D < 1 || !x || !l->kernel || !l->recurrent_kernel || !last || !h || !c)
    return BL_ERR_ARG;
  if (l->stateful && l->state_batch != 0 && l->state_batch != B) return BL_ERR_BATCH;
  z = malloc(sizeof(double) * (size_t)G);
  out = last; /* the last emitted output of every row, starts at zero */
  if (z == NULL) return BL_ERR_MEMORY;
  if (h0 != NULL && c0 != NULL) {
    memcpy(h, h0, sizeof(double) * state);
    memcpy(c, c0, sizeof(double) * state);
  } else if (l->stateful && l->state_batch == B) {
    memcpy(h, l->h_state, sizeof(double) * state);
    memcpy(c, l->c_state, sizeof(double) * state);
  } else {
    memset(h, 0, sizeof(double) * state);
    memset(c, 0, sizeof(double) * state);
  }
  memset(out, 0, sizeof(double) * state);
  for (t = 0; t < T; t++) {                           /* t: processing step */
    const int ti = l->go_backwards ? T - 1 - t : t;   /* the input step it reads */
    for (b = 0; b < B; b++) {
      const double *xt = x + ((size_t)b * T + ti) * D;
      double *hb = h + (size_t)b * n, *cb = c + (size_t)b * n, *ob = out + (size_t)b * n;
      const int valid = mask == NULL || mask[(size_t)b * T + ti];
      if (valid) {
        /* z = x_t W + h U + b, gates i, f, c, o */
        for (k = 0; k < G; k++) z[k] = 0.0;
        for (j = 0; j < D; j++)
          for (k = 0; k < G; k++) z[k] += xt[j] * l->kernel[(size_t)j * G + k];
        if (l->bias != NULL)
          for (k = 0; k < G; k++) z[k] += l->bias[k];
        for (j = 0; j < n; j++)
          for (k = 0; k < G; k++) z[k] += hb[j] * l->recurrent_kernel[(size_t)j * G + k];
        for (j = 0; j < n; j++) {
          double i = bl_activate(l->recurrent_activation, z[j], l->keras2_hard_sigmoid);
          double f = bl_activate(l->recurrent_activation, z[n + j], l->keras2_hard_sigmoid);
          double g = bl_activate(l->activation, z[2 * n + j], l->keras2_hard_sigmoid);
          double o = bl_activate(l->recurrent_activation, z[3 * n + j], l->keras2_hard_sigmoid);
          cb[j] = f * cb[j] + i * g;
          hb[j] = o * bl_activate(l->activation, cb[j], l->keras2_hard_sigmoid);
          ob[j] = hb[j];
        }
      } else if (zofm) {             /* masked step: state frozen, output 0 ... */
        for (j = 0; j < n; j++) ob[j] = 0.0;
      }                              /* ... or the previous output */
      if (seq != NULL) memcpy(seq + ((size_t)b * T + t) * n, ob, sizeof(double) * n);
    }
  }
  if (d_quirk)
    for (b = 0; b < B; b++)
      for (t = 0; t < T; t++)
        if (!mask[(size_t)b * T + t]) memset(seq + ((size_t)b * T + t) * n, 0, sizeof(double) * n);
  free(z);
  if (l->stateful) { /* store the final states for the next call */
    if (l->state_batch == 0) {
      l->h_state = malloc(sizeof(double) * state);
      l->c_state = malloc(sizeof(double) * state);
      if (l->h_state == NULL || l->c_state == NULL) {
        bl_lstm_free(l);
        return BL_ERR_MEMORY;
      }
      l->state_batch = B;
    }
    memcpy(l->h_state, h, sizeof(double) * state);
    memcpy(l->c_state, c, sizeof(double) * state);
  }
  return BL_OK;
}

int bl_lstm_call(bl_lstm *l, int B, int T, const double *x, const unsigned char *mask,
                 const double *h0, const double *c0, double *out, double *h, double *c) {
  const size_t state = (size_t)B * (size_t)l->units;
  double *last = malloc(sizeof(double) * (state ? state : 1));
  int rc;
  if (last == NULL) return BL_ERR_MEMORY;
  rc = bl_lstm_run(l, B, T, x, mask, h0, c0, l->return_sequences ? out : NULL, last, h, c);
  if (rc == BL_OK) {
    if (!l->return_sequences) memcpy(out, last, sizeof(double) * state);
    round_all(out, l->return_sequences ? state * (size_t)T : state, l->precision);
    round_all(h, state, l->precision);
    round_all(c, state, l->precision);
  }
  free(last);
  return rc;
}

/* ---- Bidirectional ----------------------------------------------------------------------- */

int bl_merge_from_name(const char *name) {
  if (name == NULL || strcmp(name, "none") == 0 || strcmp(name, "None") == 0) return BL_MERGE_NONE;
  if (strcmp(name, "concat") == 0) return BL_MERGE_CONCAT;
  if (strcmp(name, "sum") == 0) return BL_MERGE_SUM;
  if (strcmp(name, "mul") == 0) return BL_MERGE_MUL;
  if (strcmp(name, "ave") == 0) return BL_MERGE_AVE;
  return -1;
}

void bl_bidirectional_reset_state(bl_bidirectional *bi) {
  bl_lstm_reset_state(&bi->forward);
  bl_lstm_reset_state(&bi->backward);
}

void bl_bidirectional_free(bl_bidirectional *bi) {
  bl_lstm_free(&bi->forward);
  bl_lstm_free(&bi->backward);
}

int bl_bidirectional_call(bl_bidirectional *bi, int B, int T, const double *x,
                          const unsigned char *mask, const double *const *init, double *out,
                          double *out_bw, double *h_fw, double *c_fw, double *h_bw, double *c_bw) {
  bl_lstm *fw = &bi->forward, *bw = &bi->backward;
  const int seq = fw->return_sequences, nf = fw->units, nb = bw->units;
  const size_t steps = seq ? (size_t)B * (size_t)T : (size_t)B; /* rows of the output */
  double *yf, *yb, *last_f, *last_b;
  size_t r;
  int j, rc = BL_ERR_MEMORY;
  if (bi->merge_mode != BL_MERGE_CONCAT && bi->merge_mode != BL_MERGE_NONE && nf != nb) return BL_ERR_ARG;
  if (bi->merge_mode == BL_MERGE_NONE && out_bw == NULL) return BL_ERR_ARG;
  /* Keras's Bidirectional: both layers get zero_output_for_mask = return_sequences. */
  fw->zero_output_for_mask = bw->zero_output_for_mask = seq;
  bw->return_sequences = seq;
  yf = malloc(sizeof(double) * steps * (size_t)nf);
  yb = malloc(sizeof(double) * steps * (size_t)nb);
  last_f = malloc(sizeof(double) * (size_t)B * (size_t)nf);
  last_b = malloc(sizeof(double) * (size_t)B * (size_t)nb);
  if (yf == NULL || yb == NULL || last_f == NULL || last_b == NULL) goto done;
  rc = bl_lstm_run(fw, B, T, x, mask, init ? init[0] : NULL, init ? init[1] : NULL, seq ? yf : NULL,
                   last_f, h_fw, c_fw);
  if (rc != BL_OK) goto done;
  rc = bl_lstm_run(bw, B, T, x, mask, init ? init[2] : NULL, init ? init[3] : NULL, seq ? yb : NULL,
                   last_b, h_bw, c_bw);
  if (rc != BL_OK) goto done;
  if (!seq) {
    memcpy(yf, last_f, sizeof(double) * (size_t)B * (size_t)nf);
    memcpy(yb, last_b, sizeof(double) * (size_t)B * (size_t)nb);
  } else { /* the backward sequence back to input time */
    int b, t;
    for (b = 0; b < B; b++)
      for (t = 0; t < T / 2; t++) {
        double *p = yb + ((size_t)b * T + t) * nb, *q = yb + ((size_t)b * T + (T - 1 - t)) * nb;
        for (j = 0; j < nb; j++) { double s = p[j]; p[j] = q[j]; q[j] = s; }
      }
  }
  /* Each direction's output in its own policy, then the wrapper's; the states in their own. */
  round_all(yf, steps * (size_t)nf, fw->precision);
  round_all(yb, steps * (size_t)nb, bw->precision);
  round_all(yf, steps * (size_t)nf, bi->precision);
  round_all(yb, steps * (size_t)nb, bi->precision);
  for (r = 0; r < steps; r++) {
    const double *f = yf + r * nf, *g = yb + r * nb;
    switch (bi->merge_mode) {
      case BL_MERGE_CONCAT:
        memcpy(out + r * (nf + nb), f, sizeof(double) * nf);
        memcpy(out + r * (nf + nb) + nf, g, sizeof(double) * nb);
        break;
      case BL_MERGE_SUM: for (j = 0; j < nf; j++) out[r * nf + j] = f[j] + g[j]; break;
      case BL_MERGE_MUL: for (j = 0; j < nf; j++) out[r * nf + j] = f[j] * g[j]; break;
      case BL_MERGE_AVE: for (j = 0; j < nf; j++) out[r * nf + j] = (f[j] + g[j]) / 2.0; break;
      case BL_MERGE_NONE:
        memcpy(out + r * nf, f, sizeof(double) * nf);
        memcpy(out_bw + r * nb, g, sizeof(double) * nb);
        break;
    }
  }
  round_all(out, steps * (size_t)(bi->merge_mode == BL_MERGE_CONCAT ? nf + nb : nf), bi->precision);
  round_all(h_fw, (size_t)B * nf, fw->precision);
  round_all(c_fw, (size_t)B * nf, fw->precision);
  round_all(h_bw, (size_t)B * nb, bw->precision);
  round_all(c_bw, (size_t)B * nb, bw->precision);
done:
  free(yf);
  free(yb);
  free(last_f);
  free(last_b);
  return rc;
}
