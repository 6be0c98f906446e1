/*
 * What each tape op computes: its value and, when asked, its partials with
 * respect to its operands.  The interpreter (tape.c) and the value pass
 * compiled from a tape (diffsens/_native.py) both use these definitions, so
 * a compiled tape gives the interpreter's results bit for bit.
 */
#ifndef DIFFSENS_TAPE_OPS_H
#define DIFFSENS_TAPE_OPS_H

#include <math.h>

#include "tape.h"

static double powi(double x, int e)
{
    unsigned int u = e < 0 ? -(unsigned int)e : (unsigned int)e;
    double r = 1.0;
    while (u) {
        if (u & 1u)
            r *= x;
        x *= x;
        u >>= 1;
    }
    return e < 0 ? 1.0 / r : r;
}

/* An op's value and, when asked, its partials with respect to operands a, b
 * and c.  One definition serves the value, dual and reverse passes. */
typedef struct local {
    double v, ca, cb, cc;
} local;

static inline local op_eval(int code, double a, double b, double c, int ci,
                            int partials)
{
    local r = {0.0, 0.0, 0.0, 0.0};
    switch (code) {
    case DS_OP_ADD: r.v = a + b; r.ca = 1.0; r.cb = 1.0; break;
    case DS_OP_SUB: r.v = a - b; r.ca = 1.0; r.cb = -1.0; break;
    case DS_OP_MUL: r.v = a * b; r.ca = b; r.cb = a; break;
    case DS_OP_DIV:
        r.v = a / b;
        if (partials) { r.ca = 1.0 / b; r.cb = -r.v / b; }
        break;
    case DS_OP_NEG: r.v = -a; r.ca = -1.0; break;
    case DS_OP_POW:
        r.v = pow(a, b);
        if (partials) {
            r.ca = b == 0.0 ? 0.0 : b * pow(a, b - 1.0);
            r.cb = a > 0.0 ? log(a) * r.v : 0.0;
        }
        break;
    case DS_OP_POWI:
        r.v = powi(a, ci);
        if (partials)
            r.ca = ci == 0 ? 0.0 : ci * powi(a, ci - 1);
        break;
    case DS_OP_ABS:
        r.v = fabs(a);
        r.ca = a > 0.0 ? 1.0 : (a < 0.0 ? -1.0 : 0.0);
        break;
    case DS_OP_EXP: r.v = exp(a); r.ca = r.v; break;
    case DS_OP_LOG: r.v = log(a); r.ca = 1.0 / a; break;
    case DS_OP_LOG1P: r.v = log1p(a); r.ca = 1.0 / (1.0 + a); break;
    case DS_OP_EXPM1: r.v = expm1(a); if (partials) r.ca = exp(a); break;
    case DS_OP_SQRT: r.v = sqrt(a); r.ca = 0.5 / r.v; break;
    case DS_OP_SIN: r.v = sin(a); if (partials) r.ca = cos(a); break;
    case DS_OP_COS: r.v = cos(a); if (partials) r.ca = -sin(a); break;
    case DS_OP_TAN: r.v = tan(a); r.ca = 1.0 + r.v * r.v; break;
    case DS_OP_TANH:   /* 1 - tanh^2 cancels where tanh saturates */
        r.v = tanh(a);
        if (partials) { const double c = cosh(a); r.ca = 1.0 / (c * c); }
        break;
    case DS_OP_SINH: r.v = sinh(a); if (partials) r.ca = cosh(a); break;
    case DS_OP_COSH: r.v = cosh(a); if (partials) r.ca = sinh(a); break;
    case DS_OP_ARCTAN: r.v = atan(a); r.ca = 1.0 / (1.0 + a * a); break;
    case DS_OP_ARCSIN:
        r.v = asin(a);
        if (partials) r.ca = 1.0 / sqrt((1.0 - a) * (1.0 + a));  /* no cancellation */
        break;
    case DS_OP_ARCCOS:
        r.v = acos(a);
        if (partials) r.ca = -1.0 / sqrt((1.0 - a) * (1.0 + a));
        break;
    case DS_OP_LT: r.v = a < b; break;
    case DS_OP_LE: r.v = a <= b; break;
    case DS_OP_GT: r.v = a > b; break;
    case DS_OP_GE: r.v = a >= b; break;
    case DS_OP_EQ: r.v = a == b; break;
    case DS_OP_NE: r.v = a != b; break;
    case DS_OP_SELECT:
        if (a != 0.0) { r.v = b; r.cb = 1.0; } else { r.v = c; r.cc = 1.0; }
        break;
    case DS_OP_MAX:
        if (isnan(a) || isnan(b)) { r.v = NAN; r.ca = r.cb = NAN; }
        else if (a >= b) { r.v = a; r.ca = 1.0; }
        else { r.v = b; r.cb = 1.0; }
        break;
    case DS_OP_MIN:
        if (isnan(a) || isnan(b)) { r.v = NAN; r.ca = r.cb = NAN; }
        else if (a <= b) { r.v = a; r.ca = 1.0; }
        else { r.v = b; r.cb = 1.0; }
        break;
    case DS_OP_SQUARE: r.v = a * a; r.ca = 2.0 * a; break;
    default: r.v = NAN; break;  /* LINCOMB is handled by the callers */
    }
    return r;
}

#endif /* DIFFSENS_TAPE_OPS_H */
