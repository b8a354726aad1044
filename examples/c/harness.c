/* Checks the C99 port (bilstm.c) against Keras's answers exported by bilstm_ref:
 *
 *   bilstm-ref fixtures export fixtures --format c-header --out fixtures.h
 *   cc -std=c99 -O1 -I. harness.c bilstm.c -lm -o harness && ./harness
 *
 * Usage: harness [-q] [SUBSTRING...]   (-q: print only failures, skips and the summary; with
 * substrings, only fixtures whose id contains every one of them are run).
 * Exit status: 0 if every supported fixture passes, 1 if any fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bilstm.h"
#include "fixtures.h"

typedef struct {
  double worst_diff;  /* largest |actual - expected| */
  double worst_used;  /* largest |diff| / (atol + rtol |expected|): <= 1 passes */
  int failed;
  char where[160];    /* the first failing element */
} verdict;

static size_t count_of(const bfx_output *o) {
  size_t n = 1;
  int d;
  for (d = 0; d < o->ndim; d++) n *= (size_t)o->shape[d];
  return n;
}

/* Judge one output: pass iff |a - e| <= atol + rtol |e| everywhere, NaN at the same places,
 * infinities equal. */
static void judge(const bfx_fixture *fx, int call, const bfx_output *o, const double *actual,
                  verdict *v) {
  size_t i, n = count_of(o);
  for (i = 0; i < n; i++) {
    double e = o->data[i], a = actual[i], diff, allowed;
    int bad;
    if (isnan(e) || isnan(a)) {
      bad = !(isnan(e) && isnan(a));
      diff = bad ? INFINITY : 0.0;
      allowed = 1.0;
    } else if (isinf(e) || isinf(a)) {
      bad = e != a;
      diff = bad ? INFINITY : 0.0;
      allowed = 1.0;
    } else {
      diff = fabs(a - e);
      allowed = fx->atol + fx->rtol * fabs(e);
      bad = diff > allowed;
    }
    if (diff > v->worst_diff) v->worst_diff = diff;
    if (allowed > 0 && diff / allowed > v->worst_used) v->worst_used = diff / allowed;
    if (allowed == 0 && diff > 0) v->worst_used = INFINITY;
    if (bad && !v->failed) {
      v->failed = 1;
      sprintf(v->where, "call %d output %.20s[%lu]: got %.9g, expected %.9g", call, o->name,
              (unsigned long)i, a, e);
    }
  }
}

static int setup_lstm(bl_lstm *l, const bfx_lstm *c, int keras2, int quirk, const char **why) {
  int p = bl_precision_from_policy(c->policy_name);
  memset(l, 0, sizeof *l);
  l->units = c->units;
  l->input_dim = c->input_dim;
  l->kernel = c->kernel;
  l->recurrent_kernel = c->recurrent_kernel;
  l->bias = c->use_bias ? c->bias : NULL;
  l->activation = bl_activation_from_name(c->activation_name);
  l->recurrent_activation = bl_activation_from_name(c->recurrent_activation_name);
  l->keras2_hard_sigmoid = keras2;
  l->return_sequences = c->return_sequences;
  l->go_backwards = c->go_backwards;
  l->stateful = c->stateful;
  l->zero_output_for_mask = c->zero_output_for_mask;
  l->unroll = c->unroll;
  l->quirk_unroll_mask_reversed_zeroing = quirk;
  if (l->activation == BL_ACT_UNKNOWN) { *why = "activation not supported by the port"; return 0; }
  if (l->recurrent_activation == BL_ACT_UNKNOWN) { *why = "recurrent activation not supported"; return 0; }
  if (p < 0) { *why = "unknown dtype policy"; return 0; }
  l->precision = (bl_precision)p;
  return 1;
}

/* Run every call of a fixture; 1 if it could run (verdict filled), 0 with *why if unsupported. */
static int run_fixture(const bfx_fixture *fx, int quirk, verdict *v, const char **why) {
  bl_lstm lstm;
  bl_bidirectional bi;
  const int B = fx->batch, T = fx->time;
  double *outs[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
  int k, j, rc = BL_OK, ok = 1, n_main, is_bidi = fx->class_id == BFX_BIDIRECTIONAL;
  memset(v, 0, sizeof *v);
  memset(&bi, 0, sizeof bi);
  memset(&lstm, 0, sizeof lstm);
  if (is_bidi) {
    int merge = bl_merge_from_name(fx->merge_mode_name), p = bl_precision_from_policy(fx->policy_name);
    if (!setup_lstm(&bi.forward, &fx->forward, fx->keras2_hard_sigmoid, 0, why)) return 0;
    if (!setup_lstm(&bi.backward, &fx->backward, fx->keras2_hard_sigmoid, quirk, why)) return 0;
    if (merge < 0) { *why = "unknown merge_mode"; return 0; }
    if (p < 0) { *why = "unknown dtype policy"; return 0; }
    bi.merge_mode = (bl_merge)merge;
    bi.precision = (bl_precision)p;
    n_main = merge == BL_MERGE_NONE ? 2 : 1;
    if (fx->n_outputs != n_main + (fx->forward.return_state ? 4 : 0)) { *why = "unexpected outputs"; return 0; }
  } else {
    if (!setup_lstm(&lstm, &fx->forward, fx->keras2_hard_sigmoid, quirk, why)) return 0;
    n_main = 1;
    if (fx->n_outputs != (fx->forward.return_state ? 3 : 1)) { *why = "unexpected outputs"; return 0; }
  }
  for (j = 0; j < fx->n_outputs; j++) {
    outs[j] = malloc(sizeof(double) * count_of(&fx->calls[0].expected[j]));
    if (outs[j] == NULL) { *why = "out of memory"; ok = 0; goto done; }
  }
  for (k = 0; k < fx->n_calls; k++) {
    const bfx_call *call = &fx->calls[k];
    /* Scratch for the states a call computes even when the layer does not return them. */
    double *st[4];
    double *scratch = malloc(sizeof(double) * 4 * (size_t)B *
                             (size_t)(fx->forward.units > fx->backward.units ? fx->forward.units : fx->backward.units));
    if (scratch == NULL) { *why = "out of memory"; ok = 0; goto done; }
    for (j = 0; j < 4; j++) {
      int idx = n_main + j;
      st[j] = idx < fx->n_outputs ? outs[idx] : scratch + (size_t)j * B *
              (size_t)(fx->forward.units > fx->backward.units ? fx->forward.units : fx->backward.units);
    }
    if (call->reset_before) {
      if (is_bidi) bl_bidirectional_reset_state(&bi); else bl_lstm_reset_state(&lstm);
    }
    if (is_bidi)
      rc = bl_bidirectional_call(&bi, B, T, call->x, call->mask, call->n_initial_state == 4 ? call->initial_state : NULL,
                                 outs[0], n_main == 2 ? outs[1] : NULL, st[0], st[1], st[2], st[3]);
    else
      rc = bl_lstm_call(&lstm, B, T, call->x, call->mask,
                        call->n_initial_state == 2 ? call->initial_state[0] : NULL,
                        call->n_initial_state == 2 ? call->initial_state[1] : NULL, outs[0], st[0], st[1]);
    free(scratch);
    if (rc != BL_OK) {
      v->failed = 1;
      sprintf(v->where, "call %d: the port returned error %d", k, rc);
      break;
    }
    for (j = 0; j < fx->n_outputs; j++) judge(fx, k, &call->expected[j], outs[j], v);
  }
done:
  for (j = 0; j < 6; j++) free(outs[j]);
  bl_lstm_free(&lstm);
  bl_bidirectional_free(&bi);
  return ok;
}

/* The known-deviation quirks the port can switch on. */
static int is_modelled_quirk(const char *quirk) {
  return quirk != NULL && strcmp(quirk, "unroll_mask_reversed_zeroing") == 0;
}

static int selected(const char *id, int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++)
    if (strcmp(argv[i], "-q") != 0 && strstr(id, argv[i]) == NULL) return 0;
  return 1;
}

int main(int argc, char **argv) {
  int i, quiet = 0, passed = 0, failed = 0, skipped = 0, deviations = 0, total = 0;
  for (i = 1; i < argc; i++)
    if (strcmp(argv[i], "-q") == 0) quiet = 1;
  for (i = 0; i < BILSTM_FIXTURE_COUNT; i++) {
    const bfx_fixture *fx = &bilstm_fixtures[i];
    const char *why = NULL;
    verdict v;
    if (!selected(fx->id, argc, argv)) continue;
    total++;
    if (fx->deviation != NULL && !is_modelled_quirk(fx->deviation_quirk)) {
      printf("SKIP %s: known Keras deviation %s, whose quirk %s the port does not model\n", fx->id,
             fx->deviation, fx->deviation_quirk ? fx->deviation_quirk : "(none)");
      skipped++;
      continue;
    }
    if (!run_fixture(fx, 0, &v, &why)) {
      printf("SKIP %s: %s\n", fx->id, why);
      skipped++;
      continue;
    }
    if (fx->deviation != NULL) {
      /* Keras answered under a documented bug: the port's documented semantics must differ, and
       * the port with the bug's quirk switched on must reproduce Keras's answer. */
      verdict q;
      if (!v.failed) {
        printf("FAIL %s: recorded under the known deviation %s, yet the port reproduces Keras's answer "
               "without the quirk\n", fx->id, fx->deviation);
        failed++;
      } else if (!run_fixture(fx, 1, &q, &why) || q.failed) {
        printf("FAIL %s: known deviation %s: with the quirk on, the port still differs (%s)\n", fx->id,
               fx->deviation, why ? why : q.where);
        failed++;
      } else {
        if (!quiet)
          printf("DEVIATION %s: %s reproduced with the quirk (worst |diff| %.3g); without it: %s\n",
                 fx->id, fx->deviation, q.worst_diff, v.where);
        deviations++;
      }
      continue;
    }
    if (v.failed) {
      printf("FAIL %s: %s (worst |diff| %.3g, %.3g x the tolerance atol %g + rtol %g)\n", fx->id,
             v.where, v.worst_diff, v.worst_used, fx->atol, fx->rtol);
      failed++;
    } else {
      if (!quiet)
        printf("PASS %s (worst |diff| %.3g, %.3g x the tolerance)\n", fx->id, v.worst_diff, v.worst_used);
      passed++;
    }
  }
  printf("harness: %d fixtures: %d passed, %d known-deviation, %d skipped, %d failed\n", total, passed,
         deviations, skipped, failed);
  return failed ? 1 : 0;
}
