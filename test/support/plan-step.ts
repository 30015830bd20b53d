import type { ProcessGroup } from "@dcpjs/core";
import type { PlanMessage } from "@dcpjs/core/testing";
import { vi } from "vitest";

/** What a rank sent in the save's plan step: its encoded plan, the plan object, or its hash alone. */
export function planMessageKind(message: PlanMessage): "bytes" | "object" | "hash" {
  return message.bytes instanceof Uint8Array ? "bytes" : message.plan ? "object" : "hash";
}

/**
 * Watches the save's plan step on `groups` (spies on each group's `gather`; undo with
 * `vi.restoreAllMocks()`): per round of the step, per rank, `kindOf` of what the rank sent.
 *
 * @param groups - the ranks' process groups.
 * @param kindOf - how a message is named; default {@link planMessageKind}.
 * @returns the rounds, filled as the saves run.
 */
export function watchPlanStep(
  groups: readonly ProcessGroup[],
  kindOf: (message: PlanMessage) => string = planMessageKind,
): string[][] {
  const rounds: string[][] = [];
  const seen = new Map<number, number>();
  for (const pg of groups) {
    const gather = pg.gather.bind(pg);
    vi.spyOn(pg, "gather").mockImplementation((value, root) => {
      const message = (value as { value?: { message?: PlanMessage } }).value?.message;
      if (message) {
        const round = seen.get(pg.rank) ?? 0;
        seen.set(pg.rank, round + 1);
        rounds[round] ??= [];
        rounds[round]![pg.rank] = kindOf(message);
      }
      return gather(value, root);
    });
  }
  return rounds;
}
