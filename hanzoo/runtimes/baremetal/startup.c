/* Start-up for a Cortex-M on qemu's MPS2 boards (mps2-an386: Cortex-M4F; mps2-an385: Cortex-M3, which also
 * runs a Cortex-M0+ build): the vector table, and a reset handler that enables the FPU where the build
 * uses one, copies .data from flash, zeroes .bss, opens semihosting's stdio (newlib's rdimon) and runs
 * main. Built with -nostartfiles, so this replaces newlib's crt0. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void SysTick_Handler(void);

/* a fault stops here, where a debugger (or qemu's -d int) finds it */
static void hang(void)
{
    for (;;)
        ;
}

/* a program that counts with SysTick defines its own */
__attribute__((weak)) void SysTick_Handler(void) {}

/* initial SP, then reset, NMI, HardFault, MemManage, BusFault, UsageFault, 4 reserved, SVCall, DebugMon,
 * reserved, PendSV, SysTick: the 16 system exceptions; no device interrupt is enabled */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top), Reset_Handler, hang, hang, hang, hang, hang, 0, 0, 0, 0,
    hang, hang, 0, hang, SysTick_Handler,
};

void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 and CP11 (the FPU), before the first floating-point instruction */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    for (dst = &__data_start; dst < &__data_end;)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
    initialise_monitor_handles();
    exit(main());
}

/* newlib's exit() runs __libc_fini_array, which calls _fini (crti.o's, left out by -nostartfiles); a C
 * program has nothing to run there */
void _init(void) {}
void _fini(void) {}
