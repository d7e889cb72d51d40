/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/spec'],
  testMatch: ['**/*.spec.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  testTimeout: 30000,
  // Most specs wait on sockets and child processes, not on the CPU: three workers overlap
  // that waiting on this 2-core machine (jest's default would be one). Measured here, the whole
  // suite: 83 s with two, 71 s with three; `npm run test:stress` keeps it green under load.
  maxWorkers: 3,
};
