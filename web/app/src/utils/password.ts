/** The server's rule (docs/api-identity.md): at least 8 characters, letters and digits. */
export function isStrongPassword(p: string): boolean {
  return p.length >= 8 && /[A-Za-z]/.test(p) && /\d/.test(p)
}
