/**
 * A counting semaphore, FIFO: take() resolves once one of `count` slots is free, give() frees
 * one (or hands it straight to the oldest waiter). With `wakeOnStop`, each waiter also registers
 * its wake-up there, so whoever stops the work can wake every waiter at once (they then check
 * why they woke; a waiter woken that way holds no slot).
 */
export class Slots {
  #free: number;
  readonly #waiters: (() => void)[] = [];

  constructor(count: number, private readonly wakeOnStop?: Set<() => void>) {
    this.#free = count;
  }

  take(): Promise<void> {
    if (this.#free > 0) {
      this.#free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const wake = () => {
        this.wakeOnStop?.delete(wake);
        resolve();
      };
      this.wakeOnStop?.add(wake);
      this.#waiters.push(wake);
    });
  }

  give(): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter();
    else this.#free += 1;
  }
}
