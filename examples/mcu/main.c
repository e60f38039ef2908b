/* Classify Checkerboard points on a bare-metal Cortex-M4F with checkerboard-hannet-20x30's C export
 * compiled in (export/checkerboard-hannet-20x30/model.c, built with its one-row path alone). The points
 * come over semihosting from points.txt in the folder qemu runs in: one point a line, "x1 x2", each in
 * [-1, 1]; lines starting with # are skipped. Each point is classified alone, as firmware would classify
 * one reading at a time. */
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

int main(void)
{
    char line[128];
    float x[CHECKERBOARD_HANNET_20X30_N_IN], y[CHECKERBOARD_HANNET_20X30_N_OUT];
    unsigned long n = 0;
    FILE *f = fopen("points.txt", "r");
    if (!f) {
        printf("cannot open points.txt\n");
        return 1;
    }
    while (fgets(line, sizeof line, f)) {
        char *end;
        if (line[0] == '#' || line[0] == '\n')
            continue;
        x[0] = strtof(line, &end);
        x[1] = strtof(end, &end);
        if (end == line || checkerboard_hannet_20x30_run(x, y, 1) != 0) {
            printf("not a point: %s", line);
            return 1;
        }
        /* the header's decision rule, in float as the other formats compute it */
        printf("%g %g -> class %d (scores %.6f %.6f)\n", (double)x[0], (double)x[1],
               (y[0] + y[1]) / 2 > 0.5f, (double)y[0], (double)y[1]);
        n++;
    }
    fclose(f);
    printf("%lu points classified\n", n);
    return 0;
}
