import { defineConfig } from 'vitest/config'
import LongestFirst from './test/fixtures/sequencer.js'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/fixtures/services-setup.ts'],
    setupFiles: ['test/fixtures/worker-setup.ts'],
    // Most tests wait on services, child processes and timers rather than the CPU: four files at
    // a time on two cores.
    maxWorkers: 4,
    sequence: { sequencer: LongestFirst },
    // Test files share each worker's module graph (the AWS SDK, BullMQ and src are imported once a
    // worker, not once a file: 10 s of imports instead of 28). No test mocks modules or globals.
    isolate: false,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
})
