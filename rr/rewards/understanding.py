"""RLT's teacher reward: a frozen student's understanding of the solution after the teacher's explanation."""
