// Lint rules for the hand-written JavaScript (the generated loader native.js is left out).
import js from '@eslint/js'
import globals from 'globals'

export default [
  { ignores: ['native.js', 'node_modules/**'] },
  js.configs.recommended,
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: globals.node },
  },
]
