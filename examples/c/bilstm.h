/* A small C99 port of Keras 3 LSTM and Bidirectional(LSTM) inference (the generic kernel).
 *
 * Computes in double. Weights use Keras's layout: kernel (input_dim, 4*units), recurrent_kernel
 * (units, 4*units), bias (4*units), gates in the order i, f, c, o along the last axis; every array
 * is row-major (C order). What the layers compute is described in bilstm_ref's docs/semantics.md.
 */
#ifndef BILSTM_H
#define BILSTM_H

/* Element-wise Keras activations. */
typedef enum {
  BL_ACT_UNKNOWN = 0,
  BL_ACT_LINEAR, BL_ACT_TANH, BL_ACT_SIGMOID, BL_ACT_HARD_SIGMOID, BL_ACT_RELU, BL_ACT_RELU6,
  BL_ACT_LEAKY_RELU, BL_ACT_SOFTPLUS, BL_ACT_SOFTSIGN, BL_ACT_ELU, BL_ACT_SELU, BL_ACT_CELU,
  BL_ACT_EXPONENTIAL, BL_ACT_GELU, BL_ACT_SILU, BL_ACT_HARD_SILU, BL_ACT_MISH, BL_ACT_LOG_SIGMOID,
  BL_ACT_TANH_SHRINK, BL_ACT_HARD_TANH, BL_ACT_SOFT_SHRINK, BL_ACT_HARD_SHRINK, BL_ACT_SQUAREPLUS,
  BL_ACT_SPARSE_PLUS, BL_ACT_SPARSE_SIGMOID
} bl_activation;

/* The activation named as in a Keras config ("tanh", "swish", ...); BL_ACT_UNKNOWN if none. */
bl_activation bl_activation_from_name(const char *name);

/* f(x). keras2_hard_sigmoid: hard_sigmoid is Keras 2's clip(0.2x + 0.5, 0, 1), not Keras 3's
 * relu6(x + 3) / 6. */
double bl_activate(bl_activation a, double x, int keras2_hard_sigmoid);

/* Precision Keras returns outputs in: full (float32 / float64 policies), or rounded to float16
 * (mixed_float16, float16) or bfloat16 (mixed_bfloat16, bfloat16). Only the outputs are rounded:
 * the recurrence itself runs in double. */
typedef enum { BL_PRECISION_FULL = 0, BL_PRECISION_FLOAT16, BL_PRECISION_BFLOAT16 } bl_precision;

/* The precision of a Keras dtype policy name; returns -1 for an unknown name. */
int bl_precision_from_policy(const char *policy);

/* v rounded to the precision (round half to even; float16 overflow gives infinity). */
double bl_round(double v, bl_precision p);

typedef struct {
  /* configuration (fill these) */
  int units;
  int input_dim;
  const double *kernel;           /* (input_dim, 4 * units) */
  const double *recurrent_kernel; /* (units, 4 * units) */
  const double *bias;             /* (4 * units), or NULL (use_bias=False) */
  bl_activation activation;       /* candidate and cell output (default tanh) */
  bl_activation recurrent_activation; /* gates (default sigmoid) */
  int keras2_hard_sigmoid;
  int return_sequences;
  int go_backwards;
  int stateful;
  int zero_output_for_mask;
  int unroll;                     /* no effect, except with the quirk below */
  bl_precision precision;         /* outputs rounded to this */
  /* Reproduce TensorFlow's known deviation tf-unroll-backward-mask-zeroing (off by default):
   * with unroll, a mask, go_backwards, zero_output_for_mask and return_sequences, zero the
   * processing-order sequence with the un-reversed mask instead of at masked processed steps. */
  int quirk_unroll_mask_reversed_zeroing;
  /* stored states of a stateful layer (owned; zero-initialize the struct, free with bl_lstm_free) */
  int state_batch;                /* 0: no state stored yet */
  double *h_state, *c_state;
} bl_lstm;

/* Error codes (0 is success). */
#define BL_OK 0
#define BL_ERR_ARG 1      /* a bad size or a missing array */
#define BL_ERR_MEMORY 2
#define BL_ERR_BATCH 3    /* a stateful layer called with another batch size */

/* Zero the stored states of a stateful layer (Keras's reset_state()). */
void bl_lstm_reset_state(bl_lstm *layer);
void bl_lstm_free(bl_lstm *layer);

/* One LSTM call, as Keras 3 makes it.
 *   x: (batch, time, input_dim); mask: (batch, time), nonzero = valid step, or NULL;
 *   h0, c0: (batch, units) initial states, or NULL (then the stored states of a stateful layer,
 *   else zeros).
 * Writes out: (batch, time, units) with return_sequences, in processing order (a go_backwards
 * layer's sequence is not flipped back), else (batch, units), the last output; h, c: (batch,
 * units), the states after the last valid step. Outputs are rounded to the layer's precision. */
int bl_lstm_call(bl_lstm *layer, int batch, int time, const double *x, const unsigned char *mask,
                 const double *h0, const double *c0, double *out, double *h, double *c);

/* The same, before rounding: seq (batch, time, units) in processing order or NULL, last
 * (batch, units), h and c (batch, units). */
int bl_lstm_run(bl_lstm *layer, int batch, int time, const double *x, const unsigned char *mask,
                const double *h0, const double *c0, double *seq, double *last, double *h, double *c);

typedef enum { BL_MERGE_NONE = 0, BL_MERGE_CONCAT, BL_MERGE_SUM, BL_MERGE_MUL, BL_MERGE_AVE } bl_merge;

/* merge_mode by name: "concat", "sum", "mul", "ave", "none" (or NULL); -1 if unknown. */
int bl_merge_from_name(const char *name);

typedef struct {
  bl_lstm forward;   /* go_backwards = 0 (normally) */
  bl_lstm backward;  /* go_backwards = 1; its units and activations may differ */
  bl_merge merge_mode;
  bl_precision precision; /* the wrapper's policy: merged outputs are rounded to it */
} bl_bidirectional;

/* One Bidirectional call. Both layers read the same x and un-reversed mask; their
 * zero_output_for_mask is set to return_sequences, as Keras's wrapper does.
 *   init: NULL, or 4 arrays (h_fw, c_fw, h_bw, c_bw), each (batch, units of its direction).
 * Writes out: the merged output, (batch, time, f) with return_sequences else (batch, f), where f
 * is units_fw + units_bw for concat, units for sum / mul / ave; for BL_MERGE_NONE, out is the
 * forward output and out_bw the backward one. The backward sequence is flipped back to input time
 * (only with return_sequences). h_fw, c_fw, h_bw, c_bw: the final states (batch, units). */
int bl_bidirectional_call(bl_bidirectional *bi, int batch, int time, const double *x,
                          const unsigned char *mask, const double *const *init, double *out,
                          double *out_bw, double *h_fw, double *c_fw, double *h_bw, double *c_bw);

void bl_bidirectional_reset_state(bl_bidirectional *bi);
void bl_bidirectional_free(bl_bidirectional *bi);

#endif /* BILSTM_H */
