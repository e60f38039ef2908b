/* hanzoo's bare-metal check of one C export (hanzoo.runtimes.mcu builds it with -DRUN=<name>_run,
 * -DRUN_N_IN, -DRUN_N_OUT, -DMAX_ROWS, -DCOST_ROWS). Under qemu-system-arm with semihosting, in the
 * folder qemu runs in:
 *   1. the cost: COST_ROWS rows of x.bin, each alone (RUN(x, y, 1), as firmware classifies one reading),
 *      counted in SysTick ticks, and the stack they touch below main's frame (painted beforehand);
 *   2. parity: every row of x.bin (float32, RUN_N_IN a row), up to MAX_ROWS, read in chunks and run a
 *      chunk a call, the outputs written to y.bin.
 * It prints one line, "hanzoo-mcu ...", that hanzoo.runtimes.mcu reads. Under -icount shift=0 each guest
 * instruction advances the virtual clock by 1 ns and SysTick counts the 25 MHz core clock on that clock,
 * so a tick is a fixed number of instructions: a loop of known length measures it (calibrate). */
#include <stdint.h>
#include <stdio.h>

#include "model.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define PERIOD (1ul << 24) /* SysTick is a 24-bit down-counter: the interrupt counts its wraps */
#define CHUNK 64
#define PATTERN 0xA5A5A5A5u
#define SPIN 1000000ul

extern uint32_t __stack_limit;

static volatile uint32_t wraps;
static float x[CHUNK * RUN_N_IN], y[CHUNK * RUN_N_OUT];

void SysTick_Handler(void)
{
    wraps++;
}

/* ticks since start(): the wraps and the counter, read again if a wrap came between */
static uint64_t ticks(void)
{
    uint32_t hi, lo;
    do {
        hi = wraps;
        lo = SYST_CVR;
    } while (hi != wraps);
    return (uint64_t)hi * PERIOD + (PERIOD - 1 - lo);
}

static void start(void)
{
    SYST_RVR = PERIOD - 1;
    SYST_CVR = 0;
    SYST_CSR = 7; /* enable, interrupt on wrap, the core clock */
    while (SYST_CVR == 0) /* the first tick loads the reload value (no wrap, no interrupt) */
        ;
}

/* 2n instructions (n times subtract-and-set-flags, then branch), and the same few around them whatever
 * n is. gcc reads Thumb-1 inline assembly in divided syntax, where `sub` sets the flags. */
#if defined(__thumb2__)
#define SPIN_LOOP "1: subs %0, %0, #1\n\tbne 1b"
#else
#define SPIN_LOOP "1: sub %0, #1\n\tbne 1b"
#endif
static void __attribute__((noinline)) spin(uint32_t n)
{
    __asm__ volatile(SPIN_LOOP : "+l"(n) : : "cc");
}

/* the ticks of 2 SPIN instructions: a long loop less a short one, so what surrounds them cancels */
static uint64_t calibrate(void)
{
    uint64_t t0 = ticks(), t1, t2;
    spin(SPIN);
    t1 = ticks();
    spin(2 * SPIN);
    t2 = ticks();
    return (t2 - t1) - (t1 - t0);
}

static int fail(const char *why)
{
    printf("hanzoo-mcu error: %s\n", why);
    return 1;
}

int main(void)
{
    FILE *in, *out;
    uint32_t *sp, *p;
    uint64_t cost, calib, t0;
    unsigned long rows = 0, cost_rows, stack;
    size_t n, r;

    start();
    calib = calibrate();
    in = fopen("x.bin", "rb");
    if (!in)
        return fail("cannot open x.bin");
    cost_rows = fread(x, sizeof(float) * RUN_N_IN, COST_ROWS < CHUNK ? COST_ROWS : CHUNK, in);
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (p = &__stack_limit; p < sp - 8; p++) /* all but main's own last words */
        *p = PATTERN;
    t0 = ticks();
    for (r = 0; r < cost_rows; r++)
        if (RUN(x + r * RUN_N_IN, y + r * RUN_N_OUT, 1) != 0)
            return fail("the model refused a row");
    cost = ticks() - t0;
    for (p = &__stack_limit; *p == PATTERN; p++)
        ;
    stack = (unsigned long)((char *)sp - (char *)p);

    rewind(in);
    out = fopen("y.bin", "wb");
    if (!out)
        return fail("cannot open y.bin");
    while (rows < MAX_ROWS && (n = fread(x, sizeof(float) * RUN_N_IN, CHUNK, in)) > 0) {
        if (n > MAX_ROWS - rows)
            n = MAX_ROWS - rows;
        if (RUN(x, y, n) != 0)
            return fail("the model refused a chunk");
        if (fwrite(y, sizeof(float) * RUN_N_OUT, n, out) != n)
            return fail("cannot write y.bin");
        rows += n;
    }
    if (fclose(out) != 0 || fclose(in) != 0)
        return fail("cannot close y.bin");
    printf("hanzoo-mcu ok rows=%lu cost_rows=%lu cost_ticks=%lu calib_insns=%lu calib_ticks=%lu stack=%lu\n",
           rows, cost_rows, (unsigned long)cost, 2 * SPIN, (unsigned long)calib, stack);
    return 0;
}
